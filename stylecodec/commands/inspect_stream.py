"""``stylecodec inspect IN.sfc [--json] [--model M]``: header fields, per-layer bytes and cumulative bpp.
No model needed (the structure is checked); with ``--model`` the fingerprint and the CRCs, which
are keyed by the model, are checked too."""
from __future__ import annotations

import argparse
import json

from ..bitstream import describe
from ._files import read_stream

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN.sfc", help="stylecodec stream")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", metavar="NAME|PATH",
                        help="also check the fingerprint and the CRCs (they are keyed by the model)")


def run(args: argparse.Namespace) -> int:
    data = read_stream(args.input)
    key = None
    if args.model is not None:
        from ..bitstream import ModelKey
        from ..zoo import load

        loaded = load(args.model)
        key = ModelKey(loaded.digest)
    d = describe(data, key)
    pixels = d["resolution"] ** 2
    total = d["header_bytes"]
    for layer in d["layers"]:
        total += layer["total_bytes"]
        layer["cumulative_bytes"], layer["cumulative_bpp"] = total, 8.0 * total / pixels
    if args.json:
        print(json.dumps(d, indent=1))
        return 0
    print(f"{args.input}: stylecodec v{d['version']}, model {d['fingerprint']}.., {d['resolution']}x{d['resolution']}, "
          f"quality {d['quality']}, layers {d['layers_present']} of {d['layers_declared']} declared")
    print(f"  {'layer':9s} {'payload':>7s} {'overhead':>8s} {'cum.bytes':>9s} {'cum.bpp':>8s}")
    print(f"  {'header':9s} {'':7s} {d['header_bytes']:8d} {d['header_bytes']:9d} "
          f"{8.0 * d['header_bytes'] / pixels:8.5f}")
    for layer in d["layers"]:
        print(f"  {layer['name']:9s} {layer['payload_bytes']:7d} {layer['overhead_bytes']:8d} "
              f"{layer['cumulative_bytes']:9d} {layer['cumulative_bpp']:8.5f}")
    print(f"  total {d['total_bytes']} bytes ({d['payload_bytes']} payload + {d['overhead_bytes']} container) "
          f"= {d['bpp']:.5f} bpp")
    print(f"  CRCs checked with model 0x{key.fingerprint:04x}" if key is not None else
          "  CRCs not checked (they are keyed by the model: --model checks them)")
    return 0
