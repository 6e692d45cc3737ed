"""``stylecodec index SRC [SRC...] -o INDEX [--shard k/N] [--model M]``: identity index from basic layers.

SRC: a folder of ``.sfc`` streams (only the header and basic layer of each are read: no pixels),
a folder of images (compressed first as ``compress-dir`` does, at the model's default rate, into
``--streams``), or an index file of the same model (merged). INDEX is created or extended;
the run resumes after an interruption (the index is saved atomically every ``--save-every``
seconds and on Ctrl-C / SIGTERM: exit 130 / 143). Streams that cannot be read are listed as skipped with their
reason (``stylecodec search --index INDEX --info``). See :mod:`stylecodec.search.build`.
"""
from __future__ import annotations

import argparse

from ..search.build import BATCH, SAVE_EVERY_S


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", nargs="+", metavar="SRC", help="folder of .sfc streams or of images, or an index to merge")
    parser.add_argument("-o", "--output", metavar="INDEX", required=True, help="index file to create or extend (.sfi)")
    parser.add_argument("--shard", metavar="k/N", help="this machine's share: files with sorted index %% N == k")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N files of each SRC")
    parser.add_argument("--model", default="default", metavar="NAME|PATH", help="model name or checkpoint")
    parser.add_argument("--device", default="cpu", help="device for the networks (default: cpu)")
    parser.add_argument("--align", choices=("off", "auto", "on"), default="auto",
                        help="face alignment when SRC holds images (as `stylecodec compress-dir --align`)")
    parser.add_argument("--streams", metavar="DIR",
                        help="where images are compressed to (default: INDEX.streams/<SRC folder name>)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default=None,
                        help="embedding storage of a new index (default float32; float16 halves the file)")
    parser.add_argument("--landmarks", action="store_true", help="also keep the 68 landmarks of each face")
    parser.add_argument("--batch", type=int, default=BATCH, metavar="N", help=f"streams decoded together (default {BATCH})")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="decoding processes (default 1; 2 uses both cores of a 2-core machine)")
    parser.add_argument("--save-every", type=float, default=SAVE_EVERY_S, metavar="S",
                        help=f"save the index at least every S seconds (default {SAVE_EVERY_S:g})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..codec import Codec
    from ..batch import parse_shard
    from ..eval.harness import load_codec, make_aligner
    from ..search.build import build_index
    from ..train.common import StopSignal

    shard = parse_shard(args.shard)
    codec = load_codec(args.model, args.device, "off")
    compress_codec = Codec(codec.model, align=make_aligner(args.align))      # for image folders
    with StopSignal() as stop:
        c = build_index(codec, args.src, args.output, shard=shard, limit=args.limit, batch_size=args.batch,
                        save_every=args.save_every, progress=not args.quiet, dtype=args.dtype,
                        landmarks=args.landmarks or None, streams_dir=args.streams, workers=args.workers,
                        compress_codec=compress_codec, stop=lambda: stop.requested)
    merged = f", {c['merged']} merged from other indexes" if c["merged"] else ""
    print(f"{c['added']} added, {c['already']} already indexed, {c['skipped']} skipped{merged}; "
          f"{c['entries']} faces in {c['index']}")
    if c["skipped_total"]:
        n = c["skipped_total"]
        print(f"{n} file{' is' if n == 1 else 's are'} listed as skipped with the reason: "
              f"stylecodec search --index {c['index']} --info", file=sys.stderr)
    if c["stopped"]:
        print(f"stylecodec index: stopped by {c['stopped']}; the index is saved, run the same command to resume",
              file=sys.stderr)
        return 130 if c["stopped"] == "SIGINT" else 143
    return 0
