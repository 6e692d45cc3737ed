"""Per-row quality measurements: decoded images against the aligned original (DESIGN.md §3).

:class:`Measurer` computes, for one original and a batch of decoded versions of it, PSNR,
MS-SSIM, LPIPS (AlexNet, VGG), identity cosine (facenet, SFace), dlib ResNet descriptor distance
and dlib-68 landmark NME; the
original's embeddings and landmarks are computed once. A metric whose network cannot be
loaded (weights unobtainable) is switched off with one warning and left empty in the
results; :attr:`Measurer.unavailable` says why, and the report prints it.
"""
from __future__ import annotations

import functools
import math
import warnings

import numpy as np

from ..assets.dlib_resnet import DlibResNetJudge
from ..assets.fetch import AssetError
from ..assets.landmarks import dlib_landmarks68
from ..metrics.identity import embed
from ..metrics.image import ms_ssim, psnr
from ..metrics.lpips import lpips_uint8
from ..metrics.nme import nme_per_image
from .choices import METRIC_GROUPS

__all__ = ["Measurer", "Reference", "head_nme"]


class Reference:
    """An aligned original (R x R x 3 uint8) and its lazily computed embeddings / landmarks."""

    def __init__(self, arr: np.ndarray):
        self.arr = np.ascontiguousarray(arr)
        self.cache: dict[str, object] = {}


class Measurer:
    """Compute metric columns for decoded images; ``skip``: metric groups not to compute."""

    def __init__(self, skip=()):
        unknown = set(skip) - set(METRIC_GROUPS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: {', '.join(METRIC_GROUPS)}")
        self.enabled = [g for g in METRIC_GROUPS if g not in set(skip)]
        self.unavailable: dict[str, str] = {}

    def _run(self, group: str, fn, out: list[dict]) -> None:
        if group not in self.enabled or group in self.unavailable:
            return
        try:
            values = fn()
        except Exception as e:  # noqa: BLE001  missing weights / packages switch one metric off
            if not isinstance(e, (AssetError, ImportError, FileNotFoundError, OSError)):
                raise
            self.unavailable[group] = f"{type(e).__name__}: {e}".splitlines()[0]
            warnings.warn(f"metric {group} is unavailable and left empty: {self.unavailable[group]}", stacklevel=2)
            return
        for row, vals in zip(out, values):
            row.update(vals)

    def measure(self, ref: Reference, decoded: list[np.ndarray]) -> tuple[list[dict], np.ndarray | None]:
        """(one dict of metric columns per decoded image, SFace embeddings (N, 128) or None)."""
        out: list[dict] = [{} for _ in decoded]
        if not decoded:
            return out, None
        dec = np.stack([np.ascontiguousarray(d) for d in decoded])
        refs = np.broadcast_to(ref.arr, dec.shape)
        emb_sface: dict[str, np.ndarray] = {}
        self._run("psnr", lambda: [{"psnr": _finite(v)} for v in _psnr(refs, dec)], out)
        self._run("ms_ssim", lambda: [{"ms_ssim": float(v)} for v in _msssim(refs, dec)], out)
        for net in ("alex", "vgg"):
            self._run(f"lpips_{net}", lambda net=net: [{f"lpips_{net}": float(v)} for v in _lpips(refs, dec, net)],
                      out)
        self._run("facenet", lambda: [{"id_facenet": v} for v in _identity(ref, dec, "facenet", {})], out)
        self._run("sface", lambda: [{"id_sface": v} for v in _identity(ref, dec, "sface", emb_sface)], out)
        self._run("dlib_resnet", lambda: [{"dist_dlib": v} for v in _dlib_distance(ref, dec)], out)
        self._run("dlib", lambda: _nme(ref, dec), out)
        return out, emb_sface.get("dec")

    def ref_embedding(self, ref: Reference, judge: str = "sface") -> np.ndarray | None:
        """The original's embedding (computed by :meth:`measure`), or None."""
        return ref.cache.get(f"emb_{judge}")


def _finite(v) -> float:
    v = float(v)
    return v if math.isfinite(v) else 100.0          # identical images: cap PSNR at 100 dB


def _psnr(a, b):
    return psnr(np.ascontiguousarray(a), b).numpy()


def _msssim(a, b):
    return ms_ssim(np.ascontiguousarray(a), b, channels_last=True).numpy()


def _lpips(a, b, net):
    return lpips_uint8(np.ascontiguousarray(a), b, net=net)


def _embed(images: np.ndarray, judge: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # SFace's "no face detected" fallback note
        return np.asarray(embed(images, judge), np.float64)


def _identity(ref: Reference, dec: np.ndarray, judge: str, keep: dict) -> list[float]:
    key = f"emb_{judge}"
    if key not in ref.cache:
        ref.cache[key] = _embed(ref.arr[None], judge)[0]
    e = _embed(dec, judge)
    keep["dec"] = e.astype(np.float32)
    return [float(np.clip(v, -1.0, 1.0)) for v in e @ ref.cache[key]]


def _dlib_distance(ref: Reference, dec: np.ndarray) -> list[float]:
    """dlib's metric: Euclidean distance of raw ResNet descriptors, original vs each decoded image."""
    judge = _dlib_judge()
    if "desc_dlib" not in ref.cache:
        ref.cache["desc_dlib"] = judge.embed(ref.arr[None], unit=False)[0]
    return [float(v) for v in np.linalg.norm(judge.embed(dec, unit=False) - ref.cache["desc_dlib"], axis=1)]


@functools.cache
def _dlib_judge() -> DlibResNetJudge:
    return DlibResNetJudge()


def _nme(ref: Reference, dec: np.ndarray) -> list[dict]:
    ref_pts, ref_found = _ref_landmarks(ref)
    out = []
    for d in dec:
        pts, found = dlib_landmarks68(np.ascontiguousarray(d))
        out.append({"nme_dlib": float(nme_per_image(pts, ref_pts)[0]), "face_ref": int(ref_found),
                    "face_dec": int(found)})
    return out


def head_nme(landmarks, ref: Reference) -> float:
    """NME of analysis-head landmarks (68, 2) in pixels of the R x R face vs dlib on the original."""
    pts = np.asarray(landmarks, np.float64).reshape(-1, 68, 2)[0]
    return float(nme_per_image(pts, _ref_landmarks(ref)[0])[0])


def _ref_landmarks(ref: Reference):
    if "lm_dlib" not in ref.cache:
        ref.cache["lm_dlib"] = dlib_landmarks68(ref.arr)
    return ref.cache["lm_dlib"]
