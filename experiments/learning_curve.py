"""Plot a refiner run's learning curve (RUN_DIR/metrics.csv of `stylecodec train refiner`): PSNR,
LPIPS-Alex and facenet cosine of the held-out faces vs images seen (top axis: CPU hours), with the
eigenface decoder (the linear prior the refiner starts from) as a dashed line.

    python experiments/learning_curve.py runs/refiner_a/metrics.csv --out docs/refiner_curve.png
"""
from __future__ import annotations

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("metrics")
    p.add_argument("--out", default="docs/refiner_curve.png")
    a = p.parse_args()
    with open(a.metrics) as f:
        rows = list(csv.DictReader(f))
    seen = [int(r["images_seen"]) / 1000 for r in rows]
    cpu = [float(r["cpu_hours"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, lin, label in ((axes[0], "psnr", "psnr_linear", "PSNR (dB)"),
                                (axes[1], "lpips_alex", "lpips_linear", "LPIPS-Alex"),
                                (axes[2], "facenet_cos", None, "facenet cosine")):
        ax.plot(seen, [float(r[key]) for r in rows], "o-", ms=3, label="eigenfaces + refiner")
        if lin:
            ax.plot(seen, [float(r[lin]) for r in rows], "--", color="gray", label="eigenfaces (linear prior)")
        ax.set_xlabel("thousand training images seen")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        top = ax.secondary_xaxis("top", functions=(lambda k: k, lambda k: k))
        top.set_xticks(seen[::max(1, len(seen) // 4)])
        top.set_xticklabels([f"{c:.1f}" for c in cpu[::max(1, len(seen) // 4)]])
        top.set_xlabel("CPU hours")
    axes[0].legend(fontsize=8)
    fig.suptitle("refiner on 100 held-out faces (256², quality 5, all layers)", fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"{a.out}: {len(rows)} evaluations, last at {seen[-1]:.1f} kimg / {cpu[-1]:.2f} CPU-h: PSNR "
          f"{rows[-1]['psnr']} dB, LPIPS-Alex {rows[-1]['lpips_alex']}, facenet {rows[-1]['facenet_cos']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
