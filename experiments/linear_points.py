"""Choose the linear-prior anchor's rate points (K, step): the PSNR-best pair per byte target.

    OMP_NUM_THREADS=1 python experiments/linear_points.py [--tune 500] [--k-max 768]

Fits (or loads) the eigenface PCA of :class:`stylecodec.anchors.linear.LinearAnchor` with
``--k-max`` components, takes ``--tune`` *training* faces that the PCA did not see (train split
indices fit_count .. fit_count + tune; held-out faces are never used), and for every (K, step)
of a grid computes the mean coded bytes (ideal bits of the coder's discretised Gaussian at the
snapped scale, + the header byte, + the coder's measured termination overhead) and the PSNR of
the P x P reconstruction (exact through orthonormality). For each byte target it prints the
PSNR-best pair within the target, then codes the tuning faces with the chosen pairs through the
anchor itself (real bytes). Paste the chosen pairs into ``DEFAULT_POINTS``.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.special import ndtr

from stylecodec.anchors.linear import DEFAULT_FIT_COUNT, HEADER_BYTES, LinearAnchor, pixels_unit
from stylecodec.data import pixel_array
from stylecodec.entropy import gaussian

KS = (32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768)
STEPS = tuple(round(0.25 * 2 ** (i / 4), 4) for i in range(21))       # 0.25 .. 8
TARGETS = (20, 30, 45, 60, 80, 100, 120)


def ideal_bits(c: np.ndarray, std: np.ndarray, step: float) -> np.ndarray:
    """Bits per face of coding coefficients c [n, k] at ``step`` (the coder's Gaussian, snapped scale)."""
    t = gaussian.tables()
    sigma = t.levels[np.searchsorted(t.thresholds, std / step, side="right")]
    s = np.abs(np.round(c / step))
    p = ndtr((s + 0.5) / sigma) - ndtr((s - 0.5) / sigma)
    return -np.log2(np.maximum(p, 2.0 ** -16)).sum(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tune", type=int, default=500, help="training faces outside the fit (default 500)")
    ap.add_argument("--k-max", type=int, default=768)
    ap.add_argument("--fit-count", type=int, default=DEFAULT_FIT_COUNT)
    args = ap.parse_args()

    probe = LinearAnchor(fit_count=args.fit_count, points=[(args.k_max, 1.0)])
    t0 = time.time()
    model = probe.model()
    print(f"PCA {model.key}: {time.time() - t0:.0f} s (fit or cache load)")
    faces = np.asarray(pixel_array(probe.root(), "train", probe.resolution, probe.val_count, progress=False)
                       [args.fit_count:args.fit_count + args.tune])
    x = pixels_unit(faces).astype(np.float64) - model.mean
    c = x @ model.basis.T.astype(np.float64)
    d = x.shape[1]
    total = (x ** 2).sum(1)

    # termination overhead of the coder: real payload bytes - ideal bytes, on a few faces
    over = []
    for i in range(min(20, len(faces))):
        k, step = 192, 1.0
        enc = LinearAnchor(fit_count=args.fit_count, points=[(k, step)])
        enc._model = model
        over.append(enc.encode(faces[i], 0).payload_bytes - ideal_bits(c[i:i + 1, :k], model.std[:k], step)[0] / 8)
    overhead = float(np.mean(over))
    print(f"coder overhead over the ideal bits: {overhead:.2f} B (mean of {len(over)}); header {HEADER_BYTES} B")

    rows = []
    for k in KS:
        if k > args.k_max:
            continue
        for step in STEPS:
            err = c[:, :k] - np.round(c[:, :k] / step) * step
            mse = (total - (c[:, :k] ** 2).sum(1) + (err ** 2).sum(1)) / d
            nbytes = ideal_bits(c[:, :k], model.std[:k], step) / 8 + overhead + HEADER_BYTES
            rows.append((float(nbytes.mean()), float(np.mean(10 * np.log10(4.0 / mse))), k, step))
    print("\ntarget  bytes   PSNR(P²)   K    step")
    chosen = []
    for target in TARGETS:
        fit = [r for r in rows if r[0] <= target]
        if fit:
            best = max(fit, key=lambda r: r[1])
            chosen.append((best[2], best[3]))
            print(f"{target:6d}  {best[0]:6.1f}  {best[1]:7.2f}  {best[2]:4d}  {best[3]:g}")
    frontier = sorted(rows)
    print("\nPareto front (bytes, PSNR, K, step):")
    top = -math.inf
    for r in frontier:
        if r[1] > top:
            top = r[1]
            print(f"  {r[0]:6.1f} B  {r[1]:6.2f} dB  K={r[2]:4d}  step={r[3]:g}")
    anchor = LinearAnchor(fit_count=args.fit_count, points=chosen)
    anchor._model = model
    print("\nreal coding of the tuning faces with the chosen points:")
    for q, (k, step) in enumerate(chosen):
        nb = [anchor.encode(f, q).nbytes for f in faces]
        print(f"  point {q}: K={k:4d} step={step:<6g} {np.mean(nb):6.1f} B (min {min(nb)}, max {max(nb)})")
    print("\nDEFAULT_POINTS = (" + ", ".join(f"({k}, {s:.3g})" for k, s in chosen) + ",)")


if __name__ == "__main__":
    main()
