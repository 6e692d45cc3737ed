"""Render the demo's sample faces with the default model's generator into samples/.

    python experiments/make_samples.py                     # 5 faces from pretrained default
    python experiments/make_samples.py --model PATH -n 6 --seed 10 --psi 0.7

The faces come from G's mapping network (truncation psi, fixed seeds, constant noise), so they
are synthetic (no real person, no dataset licence) but lie in the prior's own range: the
codec does better on them than on photographs, and the demo report says so. PNGs at the
model's resolution (about 100-150 KB each at 256x256).
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="model name or checkpoint")
    ap.add_argument("-n", type=int, default=5, help="number of faces")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--psi", type=float, default=0.7, help="truncation (lower: more typical faces)")
    ap.add_argument("--out", default=os.path.join(ROOT, "samples"))
    args = ap.parse_args()

    from stylecodec.eval.samples import generate_samples
    from stylecodec.zoo import load

    paths = generate_samples(load(args.model).model, args.out, n=args.n, seed=args.seed, psi=args.psi)
    for p in paths:
        print(f"{p} ({os.path.getsize(p)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
