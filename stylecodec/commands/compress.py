"""``stylecodec compress IN -o OUT.sfc [--quality Q | --bpp B] [--basic-bpp B] [--model NAME|PATH] [--align auto|on|off]``."""
from __future__ import annotations

import argparse

from ._rate import add_rate_arguments, rate_kwargs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="face image (any format Pillow reads)")
    parser.add_argument("-o", "--output", metavar="OUT.sfc", required=True, help="stream to write")
    add_rate_arguments(parser)
    parser.add_argument("--model", default="default", metavar="NAME|PATH", help="model name or checkpoint (default: default)")
    parser.add_argument("--device", default="cpu", help="device for the networks (default: cpu)")
    parser.add_argument("--align", choices=("auto", "on", "off"), default="auto",
                        help="face alignment to the training layout: on (detect + align; error without a face), "
                             "off (centre square), auto (align unless the face already sits like a UTKFace crop "
                             "or none is found; default)")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..align import FaceAligner
    from ..bitstream import describe
    from ..codec import Codec, budget_text, fits_budget
    from ._files import write_bytes

    rate = rate_kwargs(args)
    aligner = FaceAligner(args.align)
    codec = Codec.from_pretrained(args.model, device=args.device, align=aligner)
    data = codec.compress(args.input, **rate)
    write_bytes(args.output, data)
    d = describe(data)
    layers = " + ".join(f"{l['name']} {l['total_bytes']}" for l in d["layers"])
    budget = codec.default_budget
    by_default = all(v is None for v in rate.values()) and budget != (None, None)
    why = f" (model budget: {budget_text(*budget)})" if by_default else ""
    print(f"{args.input} -> {args.output}: {len(data)} bytes = {d['bpp']:.5f} bpp at {d['resolution']}x"
          f"{d['resolution']}, quality {d['quality']}{why} (header {d['header_bytes']} + {layers}); {aligner.last}")
    if by_default and not fits_budget(data, codec.resolution, *budget):
        print(f"warning: no quality fits the model's rate budget ({budget_text(*budget)}) for this image; "
              f"written at the lowest quality", file=sys.stderr)
    return 0

