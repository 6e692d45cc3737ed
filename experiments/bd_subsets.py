"""How many faces a BD-rate needs: BD-rate of stylecodec (all layers) vs VVC on random subsets of an
eval run's faces (the report prints BD-rates only from ``stylecodec.eval.report.BD_MIN_IMAGES`` faces).

    python experiments/bd_subsets.py experiments/results/anchors_utk200 [--sizes 1,5,10,20,50] [--draws 20]

Prints, per subset size, the mean and standard deviation over the draws of the BD-rate on LPIPS-Alex
and facenet identity, and how many draws gave no number (the curves did not overlap).
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stylecodec.eval.results import load_rows  # noqa: E402
from stylecodec.eval.tables import bd_table, common_rows, mean_table  # noqa: E402

METRICS = ("lpips_alex", "id_facenet")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="an eval run folder (results*.csv)")
    ap.add_argument("--sizes", default="1,5,10,20,50")
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = common_rows(load_rows(args.run))[0]
    images = sorted({r["image"] for r in rows})

    def bd(subset: set) -> dict:
        table = mean_table([r for r in rows if r["image"] in subset])
        return {r["metric"]: r["bd_rate"] for r in bd_table(table)
                if r["codec"] == "stylecodec-all" and r["metric"] in METRICS}

    print(f"{len(images)} faces, all: " + ", ".join(f"{m} {v:+.1f} %" for m, v in bd(set(images)).items()))
    rng = random.Random(args.seed)
    for k in (int(s) for s in args.sizes.split(",")):
        got = {m: [] for m in METRICS}
        for _ in range(args.draws):
            b = bd(set(rng.sample(images, k)))
            for m in METRICS:
                if isinstance(b.get(m), float):
                    got[m].append(b[m])
        print(f"{k:4d} faces: " + "; ".join(
            f"{m} {statistics.mean(v):+.1f} ± {statistics.pstdev(v):.1f} % ({args.draws - len(v)} of {args.draws} "
            f"without a number)" for m, v in got.items() if v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
