"""Normalised mean error of 68-point landmarks, normalised by the inter-ocular distance.

NME per image = mean over the 68 points of ||pred_i - ref_i|| / ||ref_36 - ref_45||, where
36 and 45 (0-based, iBUG 300-W / dlib scheme) are the outer eye corners of the reference
landmarks. Unitless (multiply by 100 for percent); any consistent pixel unit works.
"""
from __future__ import annotations

import numpy as np

__all__ = ["nme_per_image", "mean_nme", "inter_ocular", "landmark_nme", "LEFT_EYE_OUTER", "RIGHT_EYE_OUTER"]

LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45


def _batch(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (68, 2):
        raise ValueError(f"{name} must be (68, 2) or (N, 68, 2) landmarks (x, y), got {np.shape(x)}")
    return a


def inter_ocular(ref) -> np.ndarray:
    """Outer-eye-corner distance (N,) of reference landmarks (N, 68, 2) or (68, 2)."""
    r = _batch(ref, "ref")
    return np.linalg.norm(r[:, LEFT_EYE_OUTER] - r[:, RIGHT_EYE_OUTER], axis=-1)


def nme_per_image(pred, ref) -> np.ndarray:
    """Per-image NME (N,) of pred vs ref landmarks, each (N, 68, 2) or (68, 2).

    An image whose prediction holds NaN (e.g. a detector that found no face) gets NaN.
    """
    p, r = _batch(pred, "pred"), _batch(ref, "ref")
    if p.shape != r.shape:
        raise ValueError(f"pred {p.shape} and ref {r.shape} differ in shape")
    if not np.all(np.isfinite(r)):
        raise ValueError("reference landmarks contain NaN or inf")
    iod = inter_ocular(r)
    if np.any(iod <= 0):
        raise ValueError(f"zero inter-ocular distance in reference image(s) {np.flatnonzero(iod <= 0).tolist()}")
    return np.linalg.norm(p - r, axis=-1).mean(1) / iod


def mean_nme(pred, ref) -> float:
    """Mean NME over the images with a finite prediction (NaN rows are left out)."""
    per = nme_per_image(pred, ref)
    ok = np.isfinite(per)
    if not ok.any():
        raise ValueError("no image has a finite landmark prediction")
    return float(per[ok].mean())


def landmark_nme(pred, ref, mask=None):
    """Differentiable mean NME (torch) of pred vs ref landmarks [N, 68, 2] over the images where
    ``mask`` [N] (bool) is set (all when None); 0 when none is. For training losses."""
    iod = (ref[:, LEFT_EYE_OUTER] - ref[:, RIGHT_EYE_OUTER]).norm(dim=-1).clamp_min(1e-6)
    per = (pred - ref).norm(dim=-1).mean(1) / iod
    if mask is None:
        return per.mean()
    m = mask.to(per.dtype)
    return (per * m).sum() / m.sum().clamp_min(1.0)
