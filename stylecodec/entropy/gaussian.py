"""Deterministic Gaussian entropy coding: CompressAI's ``GaussianConditional`` tables, range-coded
with ``constriction`` (:mod:`.range_coder`).

Every element is coded as the integer symbol ``s = round(y - m)`` under a zero-mean
discretised Gaussian of scale ``σ``; the decoder returns ``ŷ = s + m``. The encoder and
the decoder compute ``m`` and ``σ`` independently (from the LSET), so both are *snapped*
before use, with exact float64 arithmetic on CPU:

* mean: ``m = round(clamp(mean, ±MEAN_MAX) / MEAN_STEP) * MEAN_STEP`` (MEAN_STEP = 1/16,
  round half to even). A mean only shifts ``ŷ``; it never selects a CDF, so a mean that
  lands on the other side of a grid boundary moves one element of ``ŷ`` by 1/16 but cannot
  desynchronise the stream.
* scale: the index of the nearest level (in log scale) of a fixed table of SCALE_LEVELS = 64
  levels, geometric from 0.11 to 256 (CompressAI's ``get_scale_table``), with levels and
  decision thresholds (geometric midpoints) rounded to multiples of 2^-16, so they are
  exact in float32 and float64 alike and comparisons are exact.

Inputs differing by a few ulps give different indexes only when they straddle a threshold
(probability ≈ 2·δ/0.121 per element for a relative perturbation δ; ~1e-5 for 4 float32
ulps). :func:`likelihood` applies the same snap (straight-through) so training sees the
coded model. CDF tables are built once per process in float64 (``math.erfc``), quantised by
CompressAI's ``pmf_to_quantized_cdf`` (16-bit), checked against :data:`TABLE_SHA256`, and
live outside any ``state_dict`` (no CompressAI CDF-buffer loading faults).

Payloads: each layer of an image is its own range-coded string (:mod:`.range_coder`: exact
24-bit lifts of the 16-bit tables, the shortest termination, ≈ 0.3 bytes above −log2 p per
layer), so a stream cut after any layer decodes, and the decoder re-encodes every layer it
decoded and requires the identical payload, so damage a CRC misses is still caught. Symbols
outside a table use CompressAI's escape (4-bit nibbles, coded with exact 1/16 probabilities).
Spec: ``docs/bitstream.md``.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.machinery
import importlib.util
import itertools
import math
import os
import sys
from typing import Sequence

import numpy as np
import torch

from ..bitstream import BitstreamError
from ..errors import StylecodecError
from ..layers import LAYER_NAMES
from . import range_coder

__all__ = [
    "StreamEncoder", "StreamDecoder", "tables", "snap_means", "scale_indexes",
    "quantize", "dequantize", "encode", "decode", "likelihood", "ideal_bits",
    "SCALE_MIN", "SCALE_MAX", "SCALE_LEVELS", "MEAN_STEP", "MEAN_MAX", "SYMBOL_MAX", "TABLE_SHA256",
]

SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64
GRID = 2.0 ** -16                 # levels and thresholds are multiples of this (exact in float32)
MEAN_STEP = 2.0 ** -4
MEAN_MAX = 2.0 ** 12
SYMBOL_MAX = 2 ** 15              # |s| is clamped to this when quantising
TAIL_MASS = 1e-9                  # CompressAI's default
TAIL_MULTIPLIER = 6.1094102048693975   # -Φ^-1(TAIL_MASS / 2), as scipy computes it
PRECISION = 16                    # the tables' frequencies (the range coder codes their exact 24-bit lifts)
TABLE_SHA256 = "e6ce16ead1d31c88d81df73d650bf02968b81310006122a3f4072c0806141b6e"


# CompressAI is pinned (compressai==1.2.8: setup.cfg, requirements-nodeps.txt): the CDF tables come
# from its pmf_to_quantized_cdf (checked against TABLE_SHA256). Its compiled module compressai._CXX
# (no public API: its only caller in CompressAI is the private EntropyModel._pmf_to_cdf) is loaded
# from its file rather than imported: `import compressai` imports compressai.datasets and
# torch_geometric, measured here 11-15 s in a fresh process and +1.8-2.1 s after torch and timm;
# the file itself loads in about a millisecond. It is registered under its public name.
def _compressai_ext(name: str):
    """CompressAI's compiled module ``compressai.<name>`` (here "_CXX"), loaded from its file
    without running ``compressai/__init__`` (see the comment above)."""
    full = f"compressai.{name}"
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.find_spec("compressai")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, name + suffix)
            if os.path.exists(path):
                ext_spec = importlib.util.spec_from_file_location(full, path)
                module = importlib.util.module_from_spec(ext_spec)
                sys.modules[full] = module
                ext_spec.loader.exec_module(module)
                if "compressai" in sys.modules:
                    setattr(sys.modules["compressai"], name, module)
                return module
    raise StylecodecError(f"CompressAI's compiled module {full} is missing: install compressai==1.2.8")


@dataclasses.dataclass(frozen=True)
class Tables:
    """The frozen coding model: ``levels`` (K,) and ``thresholds`` (K-1,) float64; per level
    the quantised CDF (``cdfs[k]``, ``cdf_lengths[k]`` entries), ``offsets[k]`` = lowest symbol."""

    levels: np.ndarray
    thresholds: np.ndarray
    cdfs: tuple
    cdf_lengths: tuple
    offsets: tuple
    digest: str


def _snap_grid(x: float) -> float:
    return round(x / GRID) * GRID


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _build_tables() -> Tables:
    pmf_to_quantized_cdf = _compressai_ext("_CXX").pmf_to_quantized_cdf
    lo, hi = math.log(SCALE_MIN), math.log(SCALE_MAX)
    raw = [math.exp(lo + (hi - lo) * k / (SCALE_LEVELS - 1)) for k in range(SCALE_LEVELS)]
    levels = np.array([_snap_grid(v) for v in raw], dtype=np.float64)
    thresholds = np.array([_snap_grid(math.sqrt(a * b)) for a, b in zip(raw[:-1], raw[1:])], dtype=np.float64)
    cdfs, lengths, offsets = [], [], []
    for s in levels:
        # Same model as GaussianConditional.update(), in float64: symbols -c..c plus a tail bin.
        c = int(math.ceil(s * TAIL_MULTIPLIER))
        pmf = [_phi((0.5 - abs(k - c)) / s) - _phi((-0.5 - abs(k - c)) / s) for k in range(2 * c + 1)]
        tail = 2.0 * _phi((-0.5 - c) / s)
        cdf = [int(v) for v in pmf_to_quantized_cdf(pmf + [tail], PRECISION)]
        cdfs.append(tuple(cdf))
        lengths.append(len(cdf))
        offsets.append(-c)
    h = hashlib.sha256()
    h.update(levels.astype("<f8").tobytes() + thresholds.astype("<f8").tobytes())
    for cdf, off in zip(cdfs, offsets):
        h.update(np.asarray(cdf, dtype="<i4").tobytes() + off.to_bytes(4, "little", signed=True))
    return Tables(levels, thresholds, tuple(cdfs), tuple(lengths), tuple(offsets), h.hexdigest())


@functools.lru_cache(maxsize=None)
def tables() -> Tables:
    """The coding tables (built once per process; raises if they differ from the reference)."""
    t = _build_tables()
    if t.digest != TABLE_SHA256:
        raise StylecodecError(f"entropy-coding tables differ from the reference (sha256 {t.digest[:16]}… != "
                              f"{TABLE_SHA256[:16]}…): streams made here would not decode elsewhere")
    return t


# ---- snapping (exact, CPU float64) -------------------------------------------------------------

def _f64(x) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to("cpu", torch.float64).reshape(-1)
    if not torch.isfinite(t).all():
        raise ValueError("entropy parameters / latents must be finite (got NaN or inf)")
    return t


def snap_means(means) -> torch.Tensor:
    """Means (any shape/device/dtype) -> flat float64 CPU tensor on the 1/16 grid."""
    m = _f64(means).clamp(-MEAN_MAX, MEAN_MAX)
    return torch.round(m / MEAN_STEP) * MEAN_STEP


def scale_indexes(scales) -> torch.Tensor:
    """Scales (any shape/device/dtype) -> flat int64 CPU tensor of table indexes 0..63."""
    s = _f64(scales)
    th = torch.from_numpy(tables().thresholds)
    return torch.searchsorted(th, s, right=True)


def quantize(y, means) -> torch.Tensor:
    """Symbols ``round(y - m)`` (flat int64, clamped to ±SYMBOL_MAX) for latents y and means."""
    y, m = _f64(y), snap_means(means)
    if y.numel() != m.numel():
        raise ValueError(f"{y.numel()} latents but {m.numel()} means")
    s = torch.round(y - m).clamp(-SYMBOL_MAX, SYMBOL_MAX)
    return s.to(torch.int64)


def dequantize(symbols, means, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``ŷ = s + m`` shaped like ``means`` on its device; exact in float32 (|ŷ| < 2^16, step 1/16)."""
    s = torch.as_tensor(symbols).to("cpu", torch.float64).reshape(-1)
    y = (s + snap_means(means)).to(dtype)
    means = torch.as_tensor(means)
    return y.reshape(means.shape).to(means.device)


# ---- range coding (constriction, exact 24-bit lifts of the tables) ------------------------------

NIBBLE_TABLE = SCALE_LEVELS       # table index of the escape nibbles (16 equal weights: exactly 4 bits each)
ESCAPE_NIBBLES_MAX = 5            # |s| <= SYMBOL_MAX needs at most 5 nibbles; more is damage


@functools.lru_cache(maxsize=None)
def _alphabet() -> range_coder.Alphabet:
    """The 64 scale tables and the nibble table as range-coder models (built once per process,
    after checking the tables and the coder against their references)."""
    t = tables()
    range_coder.self_check()
    freqs = [np.diff(np.asarray(c, dtype=np.int64)) for c in t.cdfs]
    return range_coder.Alphabet(freqs + [[1 << (range_coder.TABLE_BITS - 4)] * 16])


def _codes(symbol: int, level: int, out: list) -> None:
    """Append the codes (table, index) of one symbol under scale level ``level``: its index in the
    table, or the escape index followed by nibbles (CompressAI's scheme: the nibble count in base-15
    digits, then the value -2v-1 (v < 0) or 2(v - top) (v >= top), least significant nibble first)."""
    t = tables()
    top = t.cdf_lengths[level] - 2
    v = symbol - t.offsets[level]
    if 0 <= v < top:
        out.append((level, v))
        return
    out.append((level, top))
    raw = -2 * v - 1 if v < 0 else 2 * (v - top)
    n = (raw.bit_length() + 3) // 4
    count = n
    while count >= 15:
        out.append((NIBBLE_TABLE, 15))
        count -= 15
    out.append((NIBBLE_TABLE, count))
    out.extend((NIBBLE_TABLE, (raw >> (4 * j)) & 15) for j in range(n))


class StreamEncoder:
    """Codes the layers of one image, each layer into its own terminated range-coded payload
    (:mod:`.range_coder`: the shortest bytes that decode to its symbols), so any prefix of the
    layers decodes alone and each layer pays about 0.3 bytes of termination.

    Per group (any number of elements, for causal / autoregressive models):
    ``ŷ = enc.encode(y, means, scales)`` (ŷ feeds the parameters of later groups); call
    ``enc.end_layer()`` after each layer's groups, then ``payloads = enc.finish()``."""

    def __init__(self):
        self._layers: list[list[tuple[int, int]]] = [[]]
        self._done = False

    def encode(self, y, means, scales) -> torch.Tensor:
        """Queue one group of the current layer; returns ŷ shaped like ``means`` (as decoded)."""
        if self._done:
            raise RuntimeError("StreamEncoder.finish() was already called")
        s, idx = quantize(y, means).tolist(), scale_indexes(scales).tolist()
        if len(s) != len(idx):
            raise ValueError(f"{len(s)} latents but {len(idx)} scales")
        for v, k in zip(s, idx):
            _codes(v, k, self._layers[-1])
        return dequantize(s, means)

    def end_layer(self) -> None:
        """Close the current layer (a layer may be empty)."""
        self._layers.append([])

    def finish(self) -> list[bytes]:
        """One payload per layer (a trailing unclosed layer is closed)."""
        if self._done:
            raise RuntimeError("StreamEncoder.finish() was already called")
        self._done = True
        layers = self._layers[:-1] if len(self._layers) > 1 and not self._layers[-1] else self._layers
        alphabet = _alphabet()
        return [range_coder.encode(alphabet, codes) for codes in layers]


class StreamDecoder:
    """Decodes the payloads of the layers present (a prefix of the layers), group by group,
    mirroring :class:`StreamEncoder`: ``ŷ = dec.decode(means, scales)``, then ``dec.finish()``.

    ``layer_sizes`` gives the element count of *every* layer of the model; ``payloads`` holds
    the first ``len(payloads)`` layers. :meth:`finish` re-encodes each layer's decoded symbols and
    requires its payload back byte for byte (the termination is canonical), so damage that a CRC
    missed is still detected in every layer present, and the work per layer is bounded (at most
    1 + 1 + ESCAPE_NIBBLES_MAX codes per symbol)."""

    def __init__(self, payloads: Sequence[bytes], layer_sizes: Sequence[int]):
        if not 0 < len(payloads) <= len(layer_sizes):
            raise ValueError(f"{len(payloads)} payloads for a model of {len(layer_sizes)} layers")
        self._alphabet = _alphabet()
        self._payloads = [bytes(p) for p in payloads]
        self._ends = list(itertools.accumulate(int(n) for n in layer_sizes[:len(payloads)]))
        self._n = self._ends[-1]
        self._count = 0
        self._layer = -1
        self._codes: list[list[tuple[int, int]]] = []
        self._dec: range_coder.Decoder | None = None
        self._done = False

    @property
    def remaining(self) -> int:
        """Symbols of the present layers not decoded yet."""
        return self._n - self._count

    def _fail(self, what: str) -> BitstreamError:
        k = max(self._layer, 0)
        name = LAYER_NAMES[k] if k < len(LAYER_NAMES) else str(k)
        return BitstreamError(f"entropy-coded data damaged in layer {k} ({name}): {what}")

    def _next_layer(self) -> None:
        while self._layer < 0 or self._count == self._ends[self._layer]:   # skips empty layers
            self._layer += 1
            self._codes.append([])
            self._dec = range_coder.Decoder(self._alphabet, self._payloads[self._layer])

    def _read(self, table: int) -> int:
        try:
            index = self._dec.decode(table)
        except range_coder.InvalidPayload:
            raise self._fail("not a valid range-coded string") from None
        self._codes[-1].append((table, index))
        return index

    def _symbol(self, level: int) -> int:
        t = tables()
        top = t.cdf_lengths[level] - 2
        v = self._read(level)
        if v == top:                                        # escape: nibble count, then the nibbles
            n = 0
            while True:
                c = self._read(NIBBLE_TABLE)
                n += c
                if n > ESCAPE_NIBBLES_MAX:
                    raise self._fail("a symbol is out of range")
                if c < 15:
                    break
            raw = sum(self._read(NIBBLE_TABLE) << (4 * j) for j in range(n))
            v = -(raw + 1) // 2 if raw & 1 else top + raw // 2
        s = v + t.offsets[level]
        if abs(s) > SYMBOL_MAX:
            raise self._fail("a symbol is out of range")
        return s

    def decode(self, means, scales) -> torch.Tensor:
        """ŷ of the next group, shaped like ``means`` on its device."""
        if self._done:
            raise RuntimeError("StreamDecoder.finish() was already called")
        idx = scale_indexes(scales).tolist()
        n_means = torch.as_tensor(means).numel()
        if len(idx) != n_means:
            raise ValueError(f"{n_means} means but {len(idx)} scales")
        if len(idx) > self.remaining:
            raise ValueError(f"asked for {len(idx)} symbols but only {self.remaining} remain in the present layers")
        s: list[int] = []
        for k in idx:
            self._next_layer()
            s.append(self._symbol(k))
            self._count += 1
        return dequantize(s, means)

    def finish(self) -> None:
        """Check the stream (see the class docstring); raises :class:`BitstreamError`."""
        if self._done:
            return
        self._done = True
        if self.remaining:
            raise ValueError(f"{self.remaining} symbols of the present layers were not decoded")
        while len(self._codes) < len(self._payloads):      # trailing empty layers
            self._codes.append([])
        for k, (codes, payload) in enumerate(zip(self._codes, self._payloads)):
            if range_coder.encode(self._alphabet, codes) != payload:
                self._layer = k
                raise self._fail("the payload is not what the encoder writes for the decoded symbols")


def encode(y, means, scales) -> bytes:
    """Code one group of elements (flat; any shape/device/dtype) as a one-layer payload."""
    enc = StreamEncoder()
    enc.encode(y, means, scales)
    return enc.finish()[0]


def decode(data: bytes, means, scales) -> torch.Tensor:
    """Inverse of :func:`encode`: ŷ shaped like ``means``. Raises :class:`BitstreamError`."""
    dec = StreamDecoder([data], [torch.as_tensor(means).numel()])
    y = dec.decode(means, scales)
    dec.finish()
    return y


# ---- rate: training likelihood and exact coding cost -------------------------------------------

class _LowerBound(torch.autograd.Function):
    """max(x, bound); the gradient passes where x >= bound or where it pushes x up
    (the semantics of ``compressai.ops.LowerBound``, without importing all of CompressAI)."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad):
        x, bound = ctx.saved_tensors
        return ((x >= bound) | (grad < 0)) * grad, None


@functools.lru_cache(maxsize=None)
def _device_tables(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    t = tables()
    return (torch.as_tensor(t.levels, dtype=dtype, device=device),
            torch.as_tensor(t.thresholds, dtype=dtype, device=device))


def likelihood(y: torch.Tensor, means: torch.Tensor, scales: torch.Tensor, mode: str = "noise",
               snap: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable rate model (same shapes in and out, any device).

    ``mode``: "noise" (y + U(-½, ½)), "ste" (rounded around the mean, straight-through) or
    "round" (hard, as coded). ``snap`` applies the coding snap with straight-through
    gradients (bit-identical to :func:`snap_means` / :func:`scale_indexes` in float32 and
    float64). Returns (ỹ, p) with p the probability mass of ỹ's unit bin, at least 1e-9.
    """
    levels, thresholds = _device_tables(scales.device, scales.dtype)
    scales = _LowerBound.apply(scales, levels[:1])
    if snap:
        m_q = torch.round(means.clamp(-MEAN_MAX, MEAN_MAX) / MEAN_STEP) * MEAN_STEP
        s_q = levels[torch.searchsorted(thresholds, scales.detach().contiguous(), right=True)]
        means = means + (m_q - means).detach()
        scales = scales + (s_q - scales).detach()
    if mode == "noise":
        y_t = y + torch.empty_like(y).uniform_(-0.5, 0.5)
    elif mode == "ste":
        r = y - means
        y_t = means + r + (torch.round(r) - r).detach()
    elif mode == "round":
        y_t = means + torch.round(y - means).detach()
    else:
        raise ValueError(f'mode must be "noise", "ste" or "round", got {mode!r}')
    v = (y_t - means).abs()
    c = -(2.0 ** -0.5)
    p = 0.5 * torch.erfc(c * (0.5 - v) / scales) - 0.5 * torch.erfc(c * (-0.5 - v) / scales)
    return y_t, _LowerBound.apply(p, torch.full((1,), 1e-9, dtype=p.dtype, device=p.device))


def ideal_bits(y, means, scales) -> torch.Tensor:
    """Exact cost in bits, per element (flat float64), of coding y: −log2 of the probabilities the
    range coder codes with (the 24-bit lifts of the tables: :func:`.range_coder.lift`), escape
    nibbles included (4 bits each). A layer's payload is its sum plus the termination (≈ 0.3 B)."""
    alphabet = _alphabet()
    s = quantize(y, means).tolist()
    idx = scale_indexes(scales).tolist()
    bits = []
    for v, k in zip(s, idx):
        codes: list = []
        _codes(v, k, codes)
        bits.append(range_coder.ideal_bits(alphabet, codes))
    return torch.tensor(bits, dtype=torch.float64)
