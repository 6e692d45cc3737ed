"""The rate options of compress, compress-dir and verify-lfw: ``--quality Q | --bpp B [--basic-bpp b]``.

``--bpp`` limits the whole file, ``--basic-bpp`` the basic layer extracted alone (what
``stylecodec extract --layers basic`` writes); with either, each image gets the highest quality
that fits both (``Codec.compress``). None of them: the model's own budget (the default model:
``--bpp 0.01 --basic-bpp 0.003``), the lowest quality for a face that no quality fits. A quality
together with a budget is a usage error (exit 2).
"""
from __future__ import annotations

import argparse

__all__ = ["add_rate_arguments", "positive_float", "rate_kwargs"]


def positive_float(text: str) -> float:
    """argparse type: a number > 0 (a rate budget)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_rate_arguments(parser: argparse.ArgumentParser) -> None:
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=int, metavar="Q",
                      help="rate point index (default: per image the highest quality within the model's rate "
                           "budget; default model: file <= 0.01 bpp, basic layer <= 0.003 bpp)")
    rate.add_argument("--bpp", type=positive_float, metavar="B",
                      help="per image, the highest quality whose whole file is <= B bits per pixel")
    parser.add_argument("--basic-bpp", type=positive_float, metavar="B",
                        help="per image, also (or only) keep the basic layer alone <= B bpp (e.g. 0.003)")
    parser.set_defaults(_rate_parser=parser)


def rate_kwargs(args: argparse.Namespace) -> dict:
    """{"quality", "bpp", "basic_bpp"} of parsed arguments; exits 2 on --quality with --basic-bpp."""
    if args.quality is not None and args.basic_bpp is not None:
        args._rate_parser.error("argument --basic-bpp: not allowed with argument --quality")
    return {"quality": args.quality, "bpp": args.bpp, "basic_bpp": args.basic_bpp}
