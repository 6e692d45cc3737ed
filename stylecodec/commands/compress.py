"""``stylecodec compress IN -o OUT.sfc [--quality Q | --bpp B] [--basic-bpp B] [--search-steps N] [--model NAME|PATH] [--align auto|on|off]``."""
from __future__ import annotations

import argparse
import sys

from ..bitstream import describe
from ..files import write_bytes
from ..rate import budget_text
from ._rate import add_rate_arguments, add_search_argument, rate_kwargs

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="face image (any format Pillow reads)")
    parser.add_argument("-o", "--output", metavar="OUT.sfc", required=True, help="stream to write")
    add_rate_arguments(parser)
    add_search_argument(parser)
    parser.add_argument("--model", default="default", metavar="NAME|PATH", help="model name or checkpoint (default: default)")
    parser.add_argument("--device", default="cpu", help="device for the networks (default: cpu)")
    parser.add_argument("--align", choices=("auto", "on", "off"), default="auto",
                        help="face alignment to the training layout: on (detect + align; error without a face), "
                             "off (centre square), auto (align unless the face already sits like a UTKFace crop "
                             "or none is found; default)")


def run(args: argparse.Namespace) -> int:
    from ..align import FaceAligner
    from ..codec import Codec

    rate = rate_kwargs(args)
    aligner = FaceAligner(args.align)
    codec = Codec.from_pretrained(args.model, device=args.device, align=aligner,
                                  search_steps=args.search_steps)
    data = codec.compress(args.input, **rate)
    write_bytes(args.output, data)
    d = describe(data)
    layers = " + ".join(f"{l['name']} {l['total_bytes']}" for l in d["layers"])
    request = codec.resolve_rate(**rate)
    budget = budget_text(request.bpp, request.basic_bpp)
    why = f" (model budget: {budget})" if request.by_model_budget else ""
    print(f"{args.input} -> {args.output}: {len(data)} bytes = {d['bpp']:.5f} bpp at {d['resolution']}x"
          f"{d['resolution']}, quality {d['quality']}{why} (header {d['header_bytes']} + {layers}); {aligner.last}")
    if request.by_model_budget and not request.within(data, codec.resolution):
        print(f"warning: no quality fits the model's rate budget ({budget}) for this image; "
              f"written at the lowest quality", file=sys.stderr)
    return 0

