"""The ``stylecodec`` command line. One sub-command per entry of :data:`COMMANDS`.

Exit status: 0 success, 2 usage error (argparse), 1 bad input or missing resource
(one line on stderr, no traceback; ``STYLECODEC_DEBUG=1`` shows the traceback). Torch runs on the
cores no other process keeps busy (:mod:`stylecodec.threads`) unless ``OMP_NUM_THREADS`` is set.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .errors import StylecodecError
from .threads import apply_thread_choice

# name -> (module implementing `add_arguments(parser)` and `run(args) -> int`, one-line help).
# A module is imported only when its command runs (or the full parser is built), so each stays small
# and `stylecodec inspect` does not wait for torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "env": ("stylecodec.commands.env", "print the environment check (versions, devices, assets)"),
    "assets": ("stylecodec.commands.assets", "fetch / list the third-party weights"),
    "convert-pkl": ("stylecodec.commands.convert_pkl", "convert an official StyleGAN2-ADA .pkl to a safe checkpoint"),
    "train": ("stylecodec.commands.train", "train the prior, the codec or the analysis heads"),
    "compress": ("stylecodec.commands.compress", "compress a face image to a .sfc stream"),
    "decompress": ("stylecodec.commands.decompress", "decode a .sfc stream (or its first layers) to an image"),
    "inspect": ("stylecodec.commands.inspect_stream", "show a .sfc stream's header and per-layer bytes (no model)"),
    "extract": ("stylecodec.commands.extract", "keep the first layers of a .sfc stream (no model)"),
    "analyze": ("stylecodec.commands.analyze", "landmarks + identity embedding from the basic layer only (no pixels)"),
    "verify-lfw": ("stylecodec.commands.verify_lfw", "LFW 10-fold verification with coded faces (and the bpp)"),
    "compress-dir": ("stylecodec.commands.compress_dir", "compress a folder of faces (sharded, resumable, manifest)"),
    "index": ("stylecodec.commands.index", "identity index of a folder of streams or images, from basic layers only"),
    "search": ("stylecodec.commands.search", "find a face (image or .sfc) in an identity index by cosine; --threshold: verify"),
    "eval": ("stylecodec.commands.eval", "compare with VVC and other anchors on a folder of faces; write the report"),
    "eval-merge": ("stylecodec.commands.eval_merge", "merge sharded eval runs and write the report"),
    "report": ("stylecodec.commands.report", "(re)write the report of an eval run folder"),
    "demo": ("stylecodec.commands.demo", "the main job: sample faces within the model budget (<= 0.01 bpp) vs VVC, report"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with ``only`` one command's arguments (the others are listed, not
    built: their modules, some of which import torch and timm, stay unimported)."""
    parser = argparse.ArgumentParser(
        prog="stylecodec",
        description="Scalable face-image codec on a StyleGAN2 prior (machines: basic layer; people: all layers).")
    parser.add_argument("--version", action="version", version=f"stylecodec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if only is None or name == only:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)   # top-level options take no values
    args = build_parser(command if command in COMMANDS else "").parse_args(argv)
    apply_thread_choice()            # torch threads = idle cores (stylecodec.threads), before any command imports torch
    try:
        return int(args._run(args) or 0)
    except StylecodecError as e:
        if os.environ.get("STYLECODEC_DEBUG"):
            raise
        print(f"stylecodec {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stylecodec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
