"""Plot refiner learning curves (RUN_DIR/metrics.csv of `stylecodec train refiner`): PSNR, LPIPS-Alex and
facenet cosine of the held-out faces vs images seen (CPU hours in the legend), with each run's eigenface
decoder (the linear prior the refiner starts from) as a dashed line. Several files = legs or branches
(a run started with --init-refiner carries the donor's images and CPU hours, so its curve goes on).

    python experiments/learning_curve.py runs/refiner_a/metrics.csv runs/refiner_c/metrics.csv --out docs/refiner_curve.png
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("metrics", nargs="+", help="metrics.csv files (label: the run folder's name)")
    p.add_argument("--out", default="docs/refiner_curve.png")
    a = p.parse_args()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for n, path in enumerate(a.metrics):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        run = Path(path).parent.name
        seen = [int(r["images_seen"]) / 1000 for r in rows]
        colour = f"C{n}"
        for ax, key, lin, label in ((axes[0], "psnr", "psnr_linear", "PSNR (dB)"),
                                    (axes[1], "lpips_alex", "lpips_linear", "LPIPS-Alex"),
                                    (axes[2], "facenet_cos", None, "facenet cosine")):
            ax.plot(seen, [float(r[key]) for r in rows], "o-", ms=3, color=colour,
                    label=f"{run} ({float(rows[0]['cpu_hours']):.2f}-{float(rows[-1]['cpu_hours']):.2f} CPU-h)")
            if lin:
                ax.plot(seen, [float(r[lin]) for r in rows], "--", color=colour, alpha=0.5,
                        label=f"{run}: eigenfaces alone")
            ax.set_xlabel("thousand training images seen")
            ax.set_title(label)
            ax.grid(alpha=0.3)
        print(f"{path}: {len(rows)} evaluations, last at {seen[-1]:.1f} kimg / {float(rows[-1]['cpu_hours']):.2f} "
              f"CPU-h: PSNR {rows[-1]['psnr']} dB (eigenfaces {rows[-1]['psnr_linear']}), LPIPS-Alex "
              f"{rows[-1]['lpips_alex']} ({rows[-1]['lpips_linear']}), facenet {rows[-1]['facenet_cos']}")
    axes[0].legend(fontsize=7)
    fig.suptitle("refiner on 100 held-out faces (256², quality 5 of the run's base model, all layers)", fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
