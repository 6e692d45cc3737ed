"""``stylecodec compress-dir IN_DIR OUT_DIR [--quality Q | --bpp B] [--basic-bpp B] [--shard k/N] [--model M]``."""
from __future__ import annotations

import argparse

from ..batch import compress_dir, parse_shard
from ._rate import add_rate_arguments, add_search_argument, rate_kwargs

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN_DIR", help="folder of face images (recursive)")
    parser.add_argument("output", metavar="OUT_DIR", help="folder for the .sfc streams and manifest*.jsonl")
    add_rate_arguments(parser)
    add_search_argument(parser)
    parser.add_argument("--shard", metavar="k/N", help="this machine's share: images with sorted index %% N == k")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N images")
    parser.add_argument("--model", default="default", metavar="NAME|PATH", help="model name or checkpoint")
    parser.add_argument("--device", default="cpu", help="device for the networks (default: cpu)")
    parser.add_argument("--align", choices=("off", "auto", "on"), default="auto",
                        help="face alignment (as `stylecodec compress --align`; default auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..align import FaceAligner
    from ..codec import Codec

    rate = rate_kwargs(args)
    shard = parse_shard(args.shard)
    codec = Codec.from_pretrained(args.model, device=args.device, align=FaceAligner(args.align),
                                  search_steps=args.search_steps)
    c = compress_dir(codec, args.input, args.output, shard=shard, limit=args.limit, progress=not args.quiet, **rate)
    over = f", {c['over_budget']} above the model's rate budget (lowest quality)" if c["over_budget"] else ""
    print(f"{c['ok']} compressed, {c['skipped']} already done, {c['error']} errors{over}; manifest: {c['manifest']}")
    return 0
