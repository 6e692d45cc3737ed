"""The linear-prior anchor ("eigenfaces"): PCA of training faces, coefficients uniformly quantised and
coded with the project's own Gaussian entropy coder. What a learned prior must beat (issue 17).

Model (fitted once, cached): the PCA of the first ``fit_count`` (N, default 6,000) faces of the
training split of a face folder (UTKFace: files sorted by name minus the last ``val_count`` =
1,000, :func:`stylecodec.data.split_files`) in the training view at P x P (P = 128 default: the
centre square, Lanczos-resized; :func:`stylecodec.data.pixel_array`), flattened channel-first
with values in [-1, 1]: the mean face, the first K_max principal directions (orthonormal rows) and
each coefficient's standard deviation over the N faces. Exact PCA (eigenvectors of the N x N Gram
matrix in float64), no random projection. Cached as ``$STYLECODEC_CACHE/anchors/linear-<key>.npz``
(written atomically under a file lock), where the key names the data folder, N, P, K_max and a
SHA-256 of the names and sizes of the N fitted files, so other data or settings never reuse it.

Coding one image at rate point (K, Δ):

1. the image (any size; the harness gives the aligned R x R face) is resized to P x P (Lanczos,
   as the training faces were), coefficients ``c = B_K (x - μ)`` (float32);
2. each coefficient is coded in the coding domain ``y = c / Δ`` (absolute step Δ in coefficient
   units, the same for every coefficient: the MSE-optimal uniform allocation) with
   :class:`stylecodec.entropy.gaussian.StreamEncoder` as one layer: mean 0, scale ``σ_k / Δ``
   (σ_k the coefficient's training std; the coder snaps it to its scale table), i.e. symbol
   ``round(c / Δ)`` under a static zero-mean discretised Gaussian, the very coder and snapping
   the codec's latents go through (and whatever backend it has);
3. the file is ``[1-byte header] + payload``; the header holds the rate point index (high 3 bits,
   so at most 8 points) and a CRC-5 (x^5 + x^2 + 1, :func:`crc5`) of the index and the payload
   (low 5 bits): every single-bit error and every burst of up to 5 bits is detected, other damage
   with probability 31/32. The coder alone is not enough: the range coder with the shortest
   termination (bitstream v2) decodes most damaged strings into other symbols (measured: half of
   the single-bit flips of a 15-byte payload and a truncated one pass its re-encode check).

Decoding checks the header, decodes the K symbols with
:class:`~stylecodec.entropy.gaussian.StreamDecoder` (which re-encodes them and requires the same
payload), so damage is reported as :class:`AnchorError`, not decoded into a wrong face; then
``ĉ = ŷ · Δ`` (bit-identical to
the encoder's dequantised coefficients), ``x̂ = μ + ĉ B_K`` at P x P, upsampled bicubically
(float, before rounding) to the requested size, as the machine-first model renders its eigenface
image.

Bytes: ``nbytes`` = 1 header byte + the entropy-coded payload (what a file holds);
``payload_bytes`` = the payload alone (the rate point agreed in advance, as the video anchors'
parameter sets are). The model itself (μ, B, σ: 76 MB at the defaults) is shared by sender
and receiver like the codec's weights and is not counted.

Rate points (``quality_name`` "point", index 0 = fewest bytes; :data:`DEFAULT_POINTS`) were picked
by ``python experiments/linear_points.py`` as the PSNR-best (K, Δ) for byte targets spanning
about 20..120 B on 500 *training* faces outside the fit (train split indices 6000..6499), never
on held-out faces.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .base import Anchor, AnchorError, EncodedImage, check_image

__all__ = ["LinearAnchor", "LinearModel", "DEFAULT_POINTS", "HEADER_BYTES", "MAX_POINTS", "crc5", "fit_pca",
           "model_key", "pixels_unit"]

# (K, Δ) per rate point, fewest bytes first (see the module docstring for how they were chosen).
# Chosen for the range coder of bitstream v2 (0.38 B termination overhead per payload, measured by
# the script; v1's rANS took 6.6 B): on the 500 tuning faces 18.7, 29.8, 44.6, 59.2, 80.0, 92.4 and
# 113.1 B per file on average. Re-run the script when the coder's overhead changes.
DEFAULT_POINTS: tuple[tuple[int, float], ...] = (
    (64, 6.73), (128, 5.66), (128, 2.83), (256, 3.36), (384, 2.83), (320, 2.0), (384, 1.68),
)
HEADER_BYTES = 1
MAX_POINTS = 8              # the header's 3 bits of rate point index
_CRC5_POLY = 0x05           # x^5 + x^2 + 1 (the USB polynomial), initial value 0x1F
DEFAULT_FIT_COUNT = 6000
DEFAULT_RESOLUTION = 128
_GRAM_CHUNK = 4096          # columns of the centred data converted to float64 at a time


def crc5(data: bytes) -> int:
    """CRC-5 (polynomial x^5 + x^2 + 1, initial 0x1F, MSB first, no final xor) of ``data``, 0..31."""
    reg = 0x1F
    for byte in data:
        for i in range(7, -1, -1):
            top = ((reg >> 4) & 1) ^ ((byte >> i) & 1)
            reg = ((reg << 1) & 0x1F) ^ (_CRC5_POLY if top else 0)
    return reg


def _header(point: int, payload: bytes) -> int:
    return (point << 5) | crc5(bytes([point]) + payload)


def pixels_unit(u8: np.ndarray) -> np.ndarray:
    """uint8 [N, P, P, 3] -> float32 [N, 3·P·P] in [-1, 1], channel-first order."""
    u8 = np.asarray(u8)
    return np.ascontiguousarray(u8.transpose(0, 3, 1, 2)).reshape(len(u8), -1).astype(np.float32) / 127.5 - 1.0


def fit_pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean [D] float32, basis [k, D] float32 orthonormal rows, std [k] float64) of rows ``x`` [N, D].

    Exact: eigenvectors of the N x N Gram matrix of the centred rows, accumulated in float64 (the
    D x D covariance when D < N). Each direction's sign makes its largest-magnitude entry positive,
    so a refit gives the same model. ``std`` is the population std of the coefficients."""
    from scipy.linalg import eigh

    x = np.asarray(x, np.float32)
    n, d = x.shape
    if not 0 < k < n or k > d:
        raise AnchorError(f"linear: cannot fit {k} components to {n} faces of {d} values (need k < faces, k <= values)")
    mean = x.mean(0, dtype=np.float64)
    xc = x - mean.astype(np.float32)
    cols = [slice(s, min(s + _GRAM_CHUNK, d)) for s in range(0, d, _GRAM_CHUNK)]
    if n <= d:
        g = np.zeros((n, n))
        for c in cols:
            part = xc[:, c].astype(np.float64)
            g += part @ part.T
        w, v = eigh(g, subset_by_index=[n - k, n - 1])
        w, v = w[::-1], np.ascontiguousarray(v[:, ::-1])      # contiguous: matmul goes through BLAS
        s = np.sqrt(np.maximum(w, 0.0))
        if s[-1] <= 1e-9 * max(s[0], 1e-30):
            raise AnchorError(f"linear: the {n} faces span fewer than {k} directions; fit fewer components")
        basis = np.empty((k, d), np.float32)
        for c in cols:
            basis[:, c] = (v.T @ xc[:, c].astype(np.float64)) / s[:, None]
    else:
        cov = xc.astype(np.float64).T @ xc.astype(np.float64)
        w, v = eigh(cov, subset_by_index=[d - k, d - 1])
        w, basis = w[::-1], np.ascontiguousarray(v[:, ::-1].T)
        s = np.sqrt(np.maximum(w, 0.0))
        basis = basis.astype(np.float32)
    big = np.abs(basis).argmax(1)
    basis *= np.sign(basis[np.arange(k), big])[:, None].astype(np.float32)
    return mean.astype(np.float32), basis, s / np.sqrt(n)


def model_key(root: Path, names: Sequence[str], resolution: int, k: int) -> str:
    """Cache name part: folder, N, P, K and a digest of the fitted files' names and sizes."""
    h = hashlib.sha256(f"{root.resolve().name}|{len(names)}|{resolution}|{k}\n".encode())
    for n in names:
        h.update(f"{n}\t{os.stat(root / n).st_size}\n".encode())
    folder = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in root.resolve().name)
    return f"{folder}-n{len(names)}-p{resolution}-k{k}-{h.hexdigest()[:16]}"


@dataclass(frozen=True)
class LinearModel:
    """A fitted PCA: ``mean`` [D], ``basis`` [K_max, D] (float32), ``std`` [K_max] (float64), at P x P."""

    mean: np.ndarray
    basis: np.ndarray
    std: np.ndarray
    resolution: int
    key: str

    def coefficients(self, img_small: np.ndarray, k: int) -> np.ndarray:
        """uint8 [P, P, 3] -> the first ``k`` coefficients (float64 [k])."""
        x = pixels_unit(img_small[None])[0]
        return (self.basis[:k] @ (x - self.mean)).astype(np.float64)

    def render(self, coeffs: np.ndarray) -> np.ndarray:
        """Coefficients [k] -> the P x P face, float32 [3, P, P] in [-1, 1] (not clipped)."""
        c = np.asarray(coeffs, np.float32)
        p = self.resolution
        return (self.mean + c @ self.basis[:len(c)]).reshape(3, p, p)


def _load_cached(path: Path, key: str, k: int, d: int) -> LinearModel | None:
    try:
        with np.load(path) as z:
            mean, basis, std, res = z["mean"], z["basis"], z["std"], int(z["resolution"])
            ok = str(z["key"]) == key
    except (OSError, KeyError, ValueError):
        return None
    if not ok or mean.shape != (d,) or basis.shape != (k, d) or std.shape != (k,):
        return None
    return LinearModel(mean, basis, std, res, key)


class LinearAnchor(Anchor):
    """Eigenfaces coded with the project's entropy coder; ``q`` = rate point index (higher: more bytes).

    ``data``: the face folder (default: :func:`stylecodec.data.default_data_root`, UTKFace);
    ``fit_count`` (N) training faces at ``resolution`` (P) x P; ``points``: (K, Δ) pairs, fewest
    bytes first (default :data:`DEFAULT_POINTS`); ``val_count``: held-out files at the end of the
    sorted list (never fitted). The PCA is fitted or loaded at the first encode / decode."""

    name = "linear"
    quality_name = "point"
    higher_is_better = True
    optional = True

    def __init__(self, data: str | os.PathLike | None = None, fit_count: int = DEFAULT_FIT_COUNT,
                 resolution: int = DEFAULT_RESOLUTION, points: Sequence[tuple[int, float]] | None = None,
                 val_count: int = 1000):
        pts = tuple((int(k), float(step)) for k, step in (DEFAULT_POINTS if points is None else points))
        if not 0 < len(pts) <= MAX_POINTS or any(k < 1 or not step > 0 for k, step in pts):
            raise AnchorError(f"linear: rate points must be 1..{MAX_POINTS} pairs (K >= 1, step > 0), got {pts}")
        if int(fit_count) < 2 or int(resolution) < 2:
            raise AnchorError(f"linear: fit_count and resolution must be >= 2, got {fit_count}, {resolution}")
        self.data = Path(data) if data is not None else None
        self.fit_count, self.resolution, self.val_count = int(fit_count), int(resolution), int(val_count)
        self.points = pts
        self.k_max = max(k for k, _ in pts)
        self.q_range = (0, len(pts) - 1)
        self.sweep_values = tuple(range(len(pts) - 1, -1, -1))
        self._model: LinearModel | None = None

    # ---------------------------------------------------------------- the model

    def root(self) -> Path:
        if self.data is not None:
            return self.data
        from ..data import default_data_root

        return default_data_root()

    def fit_names(self) -> list[str]:
        """The N training files the PCA is fitted on (AnchorError when the folder cannot give them)."""
        from ..data import list_images, split_files
        from ..errors import StylecodecError

        root = self.root()
        try:
            train = split_files(list_images(root), "train", self.val_count)
        except StylecodecError as e:
            raise AnchorError(f"linear: needs the training faces (set STYLECODEC_DATA or pass data=): {e}") from None
        if len(train) < self.fit_count:
            raise AnchorError(f"linear: {root} has {len(train)} training faces (after holding out {self.val_count}), "
                              f"fewer than the {self.fit_count} to fit")
        return train[:self.fit_count]

    def check_available(self) -> None:
        self.fit_names()

    def prepare(self) -> None:
        self.model()

    def cache_path(self) -> Path:
        from ..paths import cache_root

        return cache_root() / "anchors" / f"linear-{model_key(self.root(), self.fit_names(), self.resolution, self.k_max)}.npz"

    def model(self) -> LinearModel:
        """The fitted PCA (loaded from the cache, else fitted once and cached)."""
        if self._model is not None:
            return self._model
        from ..data import pixel_array
        from ..errors import StylecodecError
        from ..files import file_lock, write_npz

        path = self.cache_path()
        key, d = path.stem[len("linear-"):], 3 * self.resolution ** 2
        model = _load_cached(path, key, self.k_max, d) if path.is_file() else None
        if model is None:
            with file_lock(path):          # another process may be fitting the same model
                model = _load_cached(path, key, self.k_max, d) if path.is_file() else None
                if model is None:
                    try:
                        faces = pixel_array(self.root(), "train", self.resolution, self.val_count, progress=False)
                    except StylecodecError as e:
                        raise AnchorError(f"linear: cannot read the training faces: {e}") from None
                    mean, basis, std = fit_pca(pixels_unit(faces[:self.fit_count]), self.k_max)
                    write_npz(path, {"mean": mean, "basis": basis, "std": std, "resolution": self.resolution,
                                     "key": key, "fit_count": self.fit_count})
                    model = LinearModel(mean, basis, std, self.resolution, key)
        self._model = model
        return model

    # ---------------------------------------------------------------- coding

    def point(self, q: float) -> tuple[int, float]:
        """(K, Δ) of rate point ``q``."""
        self.check_q(q)
        if q != int(q):
            raise AnchorError(f"{self.name}: point must be a whole number, got {q}")
        return self.points[int(q)]

    def _small(self, img: np.ndarray) -> np.ndarray:
        p = self.resolution
        if img.shape[:2] == (p, p):
            return img
        return np.asarray(Image.fromarray(img).resize((p, p), Image.Resampling.LANCZOS))

    def encode(self, img: np.ndarray, q: float) -> EncodedImage:
        import torch

        from ..entropy.gaussian import StreamEncoder

        img = check_image(img)
        k, step = self.point(q)
        model = self.model()
        c = model.coefficients(self._small(img), k)
        enc = StreamEncoder()
        y_hat = enc.encode(c / step, torch.zeros(k, dtype=torch.float64), model.std[:k] / step)
        payload = enc.finish()[0]
        data = bytes([_header(int(q), payload)]) + payload
        return EncodedImage(data=data, payload_bytes=len(payload), anchor=self.name, q=int(q), shape=img.shape[:2],
                            meta={"k": k, "step": step, "coefficients": y_hat.to(torch.float64).numpy() * step})

    def decode_coefficients(self, data: bytes) -> np.ndarray:
        """The dequantised coefficients ``ĉ`` [K] of a file (AnchorError when it is damaged)."""
        import torch

        from ..bitstream import BitstreamError
        from ..entropy.gaussian import StreamDecoder

        data = bytes(data)
        if len(data) < HEADER_BYTES:
            raise AnchorError(f"{self.name}: an empty file (a file has a 1-byte header, then the payload)")
        point, payload = data[0] >> 5, data[HEADER_BYTES:]
        if data[0] != _header(point, payload):
            raise AnchorError(f"{self.name}: damaged file: its CRC-5 does not match (header 0x{data[0]:02x}, "
                              f"{len(payload)} payload bytes)")
        if point >= len(self.points):
            raise AnchorError(f"{self.name}: header names rate point {point}, but this anchor has "
                              f"{len(self.points)} (0..{len(self.points) - 1}): a file of other rate points")
        k, step = self.points[point]
        model = self.model()
        try:
            dec = StreamDecoder([payload], [k])
            y = dec.decode(torch.zeros(k, dtype=torch.float64), model.std[:k] / step)
            dec.finish()
        except (BitstreamError, ValueError, RuntimeError) as e:
            raise AnchorError(f"{self.name}: damaged payload (rate point {point}: K={k}, step {step:g}): {e}") from None
        return y.to(torch.float64).numpy() * step

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        import torch
        from torch.nn import functional as F

        h, w = int(shape[0]), int(shape[1])
        x = torch.from_numpy(self.model().render(self.decode_coefficients(data)))[None]
        if x.shape[-2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
        u8 = ((x[0].clamp(-1, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return np.ascontiguousarray(u8.permute(1, 2, 0).numpy())
