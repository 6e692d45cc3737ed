"""The rate options of compress, compress-dir and verify-lfw: ``--quality Q | --bpp B [--basic-bpp b]``.

``--bpp`` limits the whole file, ``--basic-bpp`` the basic layer extracted alone (what
``stylecodec extract --layers basic`` writes); with either, each image gets the highest quality
that fits both (``Codec.compress``). None of them: the model's own budget (the default model:
``--bpp 0.01 --basic-bpp 0.003``), the lowest quality for a face that no quality fits. A quality
together with a budget is a usage error (exit 2).
"""
from __future__ import annotations

import argparse

__all__ = ["add_rate_arguments", "add_search_argument", "positive_float", "rate_kwargs"]


def positive_float(text: str) -> float:
    """argparse type: a number > 0 (a rate budget)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


class _Excludes(argparse.Action):
    """Store the value; a usage error (exit 2) when the option named by ``excludes`` was given
    before it (each of the two options carries this action, so either order is caught)."""

    def __init__(self, *args, excludes: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.excludes = excludes

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.excludes.lstrip("-").replace("-", "_"), None) is not None:
            parser.error(f"argument {option_string}: not allowed with argument {self.excludes}")
        setattr(namespace, self.dest, values)


def add_rate_arguments(parser: argparse.ArgumentParser) -> None:
    """--quality Q | --bpp B, and --basic-bpp B (not with --quality)."""
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=int, metavar="Q", action=_Excludes, excludes="--basic-bpp",
                      help="rate point index (default: per image the highest quality within the model's rate "
                           "budget; default model: file <= 0.01 bpp, basic layer <= 0.003 bpp)")
    rate.add_argument("--bpp", type=positive_float, metavar="B",
                      help="per image, the highest quality whose whole file is <= B bits per pixel")
    parser.add_argument("--basic-bpp", type=positive_float, metavar="B", action=_Excludes, excludes="--quality",
                        help="per image, also (or only) keep the basic layer alone <= B bpp (e.g. 0.003)")


def rate_kwargs(args: argparse.Namespace) -> dict:
    """{"quality", "bpp", "basic_bpp"} of parsed arguments."""
    return {"quality": args.quality, "bpp": args.bpp, "basic_bpp": args.basic_bpp}


def _steps(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_search_argument(parser: argparse.ArgumentParser) -> None:
    """--search-steps N (compress, compress-dir, verify-lfw): the encoder's search of the pixel latents."""
    parser.add_argument("--search-steps", type=_steps, default=0, metavar="N",
                        help="encoder-side search: N gradient steps per face on the pixel layers' latents against "
                             "the decoded face, within the same budget (machine-first models; ~0.3 s per step on "
                             "one CPU core; 40 is the measured setting; default 0: off). Same format: any decoder "
                             "reads the streams")
