"""Fréchet distance between two sets of embeddings, named after its feature space.

FD = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), the 2-Wasserstein distance between
Gaussians fitted to the sets (unbiased covariances), in squared embedding units. It is only
"FID" with the Inception weights of FID, which this project does not have: reports name it
``FD-<space>`` (e.g. ``FD-SFace``, ``FD-facenet``) via :attr:`FrechetDistance.name`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

__all__ = ["FrechetDistance", "frechet_distance", "frechet_from_stats", "gaussian_stats"]


@dataclass(frozen=True)
class FrechetDistance:
    """A Fréchet distance ``value`` in the feature space ``space`` between n_a and n_b samples."""

    value: float
    space: str
    n_a: int
    n_b: int

    @property
    def name(self) -> str:
        return f"FD-{self.space}"

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return f"{self.name} = {self.value:.4g} (n={self.n_a}/{self.n_b})"


def gaussian_stats(emb) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D), float64, of embeddings (N, D), N >= 2."""
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need embeddings (N, D) with N >= 2, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings contain NaN or inf")
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_from_stats(mu_a, cov_a, mu_b, cov_b, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu_a, cov_a) and N(mu_b, cov_b).

    ``sqrtm(cov_a @ cov_b)``; if that is not finite (singular product), ``eps * I`` is added
    to both covariances. Imaginary parts from round-off are dropped; a significant one
    (diagonal |imag| > 1e-3) raises :class:`ValueError`.
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (mu_a.size, mu_a.size):
        raise ValueError(f"mismatched statistics: means {mu_a.shape}/{mu_b.shape}, "
                         f"covariances {cov_a.shape}/{cov_b.shape}")
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.all(np.isfinite(covmean)):
        offset = np.eye(cov_a.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"matrix square root has a large imaginary part "
                             f"({np.abs(covmean.imag).max():.3g}); are the covariances valid?")
        covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


def frechet_distance(emb_a, emb_b, space: str) -> FrechetDistance:
    """Fréchet distance between embeddings (N_a, D) and (N_b, D) computed in ``space``.

    ``space`` names the embedding network (e.g. 'SFace', 'facenet'); the result prints as
    ``FD-<space>``. With fewer samples than dimensions the covariances are singular and the
    value is biased upwards; compare only values computed with the same N.
    """
    if not isinstance(space, str) or not space.strip():
        raise ValueError("name the feature space, e.g. space='SFace'")
    if space.strip().lower().startswith("fid"):
        raise ValueError("space names the embedding network (e.g. 'SFace'); this is not FID")
    a, b = np.asarray(emb_a), np.asarray(emb_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two embedding sets (N, D) of one D, got {a.shape} and {b.shape}")
    value = frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b))
    return FrechetDistance(value=value, space=space.strip(), n_a=len(a), n_b=len(b))
