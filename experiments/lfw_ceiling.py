"""LFW 10-fold verification accuracy on the ORIGINAL images: the ceiling for decoded faces.

    python experiments/lfw_ceiling.py [--judges sface,facenet] [--pairs CSV] [--out JSON]

For each judge: embed every image of the 6,000 standard pairs, cosine similarity, threshold
chosen on 9 folds and tested on the 10th (stylecodec.metrics.verification). Prints mean ± std
accuracy and the wall time, and writes them to --out.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from stylecodec.metrics.identity import embed
from stylecodec.metrics.verification import default_pairs_csv, lfw_verification


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judges", default="sface,facenet")
    ap.add_argument("--pairs", type=Path, default=default_pairs_csv())
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("experiments/results/lfw_ceiling.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    # judges measured earlier (another invocation) stay in the file; those run now are replaced
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.update(pairs=str(args.pairs), cpu=platform.processor() or platform.machine())
    for judge in args.judges.split(","):
        t0 = time.perf_counter()
        res = lfw_verification(lambda imgs, j=judge: embed(imgs, judge=j), pairs=args.pairs)
        wall = time.perf_counter() - t0
        results[judge] = {"accuracy_mean": res.mean, "accuracy_std": res.std, "folds": res.fold_accuracy,
                          "n_pairs": res.n_pairs, "wall_s": wall, "threads": args.threads}
        print(f"{judge:8s} LFW 10-fold accuracy {100 * res.mean:.2f} ± {100 * res.std:.2f} % "
              f"({res.n_pairs} pairs, {wall:.0f} s wall, {args.threads} threads)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
