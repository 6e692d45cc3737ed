"""``stylecodec extract IN.sfc -o OUT.sfc --layers basic|middle``: keep the first layers (no model)."""
from __future__ import annotations

import argparse

from ..bitstream import extract
from ..files import write_bytes
from ..layers import LAYER_NAMES
from ._files import read_stream

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN.sfc", help="stylecodec stream")
    parser.add_argument("-o", "--output", metavar="OUT.sfc", required=True, help="stream to write")
    parser.add_argument("--layers", choices=LAYER_NAMES, required=True, help="keep the layers up to this one")


def run(args: argparse.Namespace) -> int:
    data = read_stream(args.input)
    out = extract(data, LAYER_NAMES.index(args.layers) + 1)
    write_bytes(args.output, out)
    print(f"{args.input} -> {args.output}: layers up to {args.layers}, {len(data)} -> {len(out)} bytes")
    return 0
