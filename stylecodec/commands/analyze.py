"""``stylecodec analyze IN.sfc [--json] [--model NAME|PATH]``: landmarks + identity from the basic layer.

Reads only the header and the basic layer of the file (a full stream or one cut by
``extract``) and runs the model's analysis heads on the decoded basic latent: no pixels.
"""
from __future__ import annotations

import argparse
import json

from ..bitstream import read_basic_prefix, unpack

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN.sfc", help="stylecodec stream (full or basic-only)")
    parser.add_argument("--json", action="store_true",
                        help='print {"landmarks": [[x, y] x 68], "identity": [512], "layers_used", "bytes_read"}')
    parser.add_argument("--model", default="default", metavar="NAME|PATH",
                        help="model with analysis heads (default: default)")
    parser.add_argument("--device", default="cpu", help="device for the networks (default: cpu)")


def run(args: argparse.Namespace) -> int:
    from ..codec import Codec

    data = read_basic_prefix(args.input)
    header, _ = unpack(data)                 # container errors before the model is loaded
    codec = Codec.from_pretrained(args.model, device=args.device)
    res = codec.analyze(data)
    if args.json:
        print(json.dumps({"landmarks": res["landmarks"].round(3).tolist(),
                          "identity": [round(float(v), 6) for v in res["identity"]],
                          "layers_used": res["layers_used"], "bytes_read": res["bytes_read"],
                          "resolution": codec.resolution}))
        return 0
    lm = res["landmarks"]
    eyes = lm[36:42].mean(0), lm[42:48].mean(0)
    print(f"{args.input}: {res['bytes_read']} bytes read (header + basic layer), quality {header.quality}, "
          f"{codec.resolution}x{codec.resolution} face")
    print(f"  landmarks: 68 points; eye centres ({eyes[0][0]:.1f}, {eyes[0][1]:.1f}) ({eyes[1][0]:.1f}, "
          f"{eyes[1][1]:.1f}), nose tip ({lm[30][0]:.1f}, {lm[30][1]:.1f}) px")
    head = ", ".join(f"{v:.3f}" for v in res["identity"][:4])
    print(f"  identity: {res['identity'].shape[0]}-d unit vector [{head}, ...]")
    return 0
