"""``stylecodec convert-pkl IN.pkl OUT.pt``: official StyleGAN2-ADA pickle -> safe checkpoint.

The pickle is read with an allow-list (its embedded source code is never run); the output is
``{'kind', 'init_kwargs', 'state_dict'}`` that ``torch.load(weights_only=True)`` can read.
"""
from __future__ import annotations

import argparse

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN.pkl", help="official network pickle (or a state dict / checkpoint)")
    parser.add_argument("output", metavar="OUT.pt", help="checkpoint to write")
    parser.add_argument("--which", choices=["G_ema", "G", "D"], default="G_ema",
                        help="network to extract (default: G_ema)")
    parser.add_argument("--keep-fp16", action="store_true",
                        help="keep the recorded num_fp16_res (default: 0, i.e. fp32 everywhere)")


def run(args: argparse.Namespace) -> int:
    from ..gan import load_official, save_checkpoint

    net = load_official(args.input, which=args.which, force_fp32=not args.keep_fp16)
    save_checkpoint(net, args.output)
    n = sum(p.numel() for p in net.parameters())
    kind = type(net).__name__
    extra = f", {net.num_ws} ws" if hasattr(net, "num_ws") else ""
    print(f"{args.which}: {kind} {net.img_resolution}px{extra}, {n / 1e6:.2f} M parameters -> {args.output}")
    return 0
