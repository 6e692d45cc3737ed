"""Plot refiner learning curves (RUN_DIR/metrics.csv of `stylecodec train refiner`): PSNR, LPIPS-Alex and
facenet cosine of the held-out faces vs images seen (CPU hours in the legend), with each run's eigenface
decoder (the linear prior the refiner starts from) as a dashed line. Several files = legs or branches
(a run started with --init-refiner carries the donor's images and CPU hours, so its curve goes on).

    python experiments/learning_curve.py runs/refiner_a/metrics.csv runs/refiner_c/metrics.csv --out docs/refiner_curve.png

``--trend-from KIMG``: the trend of one line of legs (give them in order; rows at or past KIMG thousand
images): a least-squares line of each metric against log2(images seen), printed as the change per doubling of
the images (± its standard error) and the value it projects at 2x and 4x the last row's images (and the
CPU-hours that costs at the line's own CPU-hours per image).
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def trend(paths: list[str], from_kimg: float) -> None:
    rows = []
    for path in paths:
        with open(path) as f:
            rows += [r for r in csv.DictReader(f) if int(r["images_seen"]) >= from_kimg * 1000]
    if len(rows) < 3:
        raise SystemExit(f"--trend-from {from_kimg}: {len(rows)} rows, need 3")
    seen = np.array([int(r["images_seen"]) for r in rows], float)
    cpu = np.array([float(r["cpu_hours"]) for r in rows])
    x = np.log2(seen)
    h_per_img = (cpu[-1] - cpu[0]) / (seen[-1] - seen[0])
    print(f"trend over {len(rows)} evaluations, {seen[0] / 1000:.0f}-{seen[-1] / 1000:.0f} kimg "
          f"({cpu[0]:.2f}-{cpu[-1]:.2f} CPU-h, {h_per_img * 1e4:.3f} CPU-h per 10k images):")
    A = np.stack([x, np.ones_like(x)], 1)
    for key in ("psnr", "lpips_alex", "facenet_cos"):
        y = np.array([float(r[key]) for r in rows])
        coef = np.linalg.lstsq(A, y, rcond=None)[0]
        resid = y - A @ coef
        se = np.sqrt(resid @ resid / (len(y) - 2) / ((x - x.mean()) ** 2).sum())
        proj = [coef[0] * np.log2(k * seen[-1]) + coef[1] for k in (2, 4)]
        cost = [cpu[-1] + h_per_img * (k - 1) * seen[-1] for k in (2, 4)]
        print(f"  {key:12s} {coef[0]:+.4f} ± {se:.4f} per doubling; fit at {seen[-1] / 1000:.0f} kimg "
              f"{coef[0] * x[-1] + coef[1]:.4f}, at 2x {proj[0]:.4f} ({cost[0]:.1f} CPU-h), "
              f"at 4x {proj[1]:.4f} ({cost[1]:.1f} CPU-h)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("metrics", nargs="+", help="metrics.csv files (label: the run folder's name)")
    p.add_argument("--out", default="docs/refiner_curve.png")
    p.add_argument("--trend-from", type=float, default=None, metavar="KIMG",
                   help="print the trend per doubling of images of the given files as one line of legs")
    a = p.parse_args()
    if a.trend_from is not None:
        trend(a.metrics, a.trend_from)
    fig, axes = plt.subplots(1, 3, figsize=(13, 5.2))
    for n, path in enumerate(a.metrics):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        run = Path(path).parent.name + ("" if Path(path).stem == "metrics" else f" ({Path(path).stem})")
        seen = [int(r["images_seen"]) / 1000 for r in rows]
        colour = plt.get_cmap("tab20")(n % 20)      # 20 distinct colours: legs and branches stay apart
        for ax, key, lin, label in ((axes[0], "psnr", "psnr_linear", "PSNR (dB)"),
                                    (axes[1], "lpips_alex", "lpips_linear", "LPIPS-Alex"),
                                    (axes[2], "facenet_cos", None, "facenet cosine")):
            ax.plot(seen, [float(r[key]) for r in rows], "o-", ms=3, color=colour,
                    label=f"{run} ({float(rows[0]['cpu_hours']):.2f}-{float(rows[-1]['cpu_hours']):.2f} CPU-h)")
            if lin:
                ax.plot(seen, [float(r[lin]) for r in rows], "--", color=colour, alpha=0.5,
                        label="eigenfaces alone (dashed, each run's codec)" if n == 0 else None)
            ax.set_xlabel("thousand training images seen")
            ax.set_title(label)
            ax.grid(alpha=0.3)
        print(f"{path}: {len(rows)} evaluations, last at {seen[-1]:.1f} kimg / {float(rows[-1]['cpu_hours']):.2f} "
              f"CPU-h: PSNR {rows[-1]['psnr']} dB (eigenfaces {rows[-1]['psnr_linear']}), LPIPS-Alex "
              f"{rows[-1]['lpips_alex']} ({rows[-1]['lpips_linear']}), facenet {rows[-1]['facenet_cos']}")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7)
    fig.suptitle("refiner on 100 held-out faces (256², quality 5 of the run's base model, all layers)", fontsize=10)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
