"""``stylecodec decompress IN.sfc -o OUT.png [--layers basic|middle|enhanced] [--model NAME|PATH]``."""
from __future__ import annotations

import argparse
import os

from ..bitstream import unpack
from ..errors import StylecodecError
from ..files import write_atomic
from ..layers import LAYER_NAMES
from ._files import read_stream

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN.sfc", help="stylecodec stream")
    parser.add_argument("-o", "--output", metavar="OUT.png", required=True,
                        help="image to write (format from the extension: .png, .jpg, .webp, ...)")
    parser.add_argument("--layers", choices=LAYER_NAMES, default="enhanced",
                        help="decode at most these layers; missing ones are predicted (default: enhanced)")
    parser.add_argument("--model", default="default", metavar="NAME|PATH", help="model name or checkpoint (default: default)")
    parser.add_argument("--device", default="cpu", help="device for the networks (default: cpu)")


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..codec import Codec

    fmt = Image.registered_extensions().get(os.path.splitext(args.output)[1].lower())
    if fmt is None:
        raise StylecodecError(f"cannot tell the image format of {args.output} from its extension (use .png)")
    data = read_stream(args.input)
    header, payloads = unpack(data)          # container errors before the model is loaded
    codec = Codec.from_pretrained(args.model, device=args.device)
    img = codec.decompress(data, layers=args.layers)
    write_atomic(args.output, lambda tmp: img.save(tmp, format=fmt))
    used = LAYER_NAMES[min(LAYER_NAMES.index(args.layers) + 1, len(payloads)) - 1]
    print(f"{args.input} -> {args.output}: {img.size[0]}x{img.size[1]} from layers up to {used} "
          f"({len(payloads)} of {header.n_layers} present), quality {header.quality}")
    return 0
