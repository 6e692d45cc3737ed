"""Deterministic Gaussian entropy coding on CompressAI's ``GaussianConditional`` tables and rANS.

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

Payloads: all layers of an image go into ONE CompressAI rANS string (termination cost paid
once), cut so that the payloads of layers 0..k are the shortest prefix from which the
zero-padding decoder returns all symbols of layers 0..k; a stream cut after any layer still
decodes. Streams of fewer than MIN_CODED_SYMBOLS symbols get zero symbols of the smallest
scale appended (≈1e-4 bit each): CompressAI's encoder writes past its buffer for 1–3
symbols. When all layers are present the decoder re-encodes what it decoded and requires the
identical payloads, so damage a CRC misses is still caught. Spec: ``docs/bitstream.md``.
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

__all__ = [
    "StreamEncoder", "StreamDecoder", "tables", "snap_means", "scale_indexes",
    "quantize", "dequantize", "encode", "decode", "likelihood", "ideal_bits", "gaussian_conditional",
    "SCALE_MIN", "SCALE_MAX", "SCALE_LEVELS", "MEAN_STEP", "MEAN_MAX", "SYMBOL_MAX",
    "MIN_CODED_SYMBOLS", "TABLE_SHA256",
]

SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64
GRID = 2.0 ** -16                 # levels and thresholds are multiples of this (exact in float32)
MEAN_STEP = 2.0 ** -4
MEAN_MAX = 2.0 ** 12
SYMBOL_MAX = 2 ** 15              # |s| is clamped to this when quantising
TAIL_MASS = 1e-9                  # CompressAI's default
TAIL_MULTIPLIER = 6.1094102048693975   # -Φ^-1(TAIL_MASS / 2), as scipy computes it
PRECISION = 16                    # compressai.ans is compiled for 16-bit frequencies
MIN_CODED_SYMBOLS = 8
TABLE_SHA256 = "e6ce16ead1d31c88d81df73d650bf02968b81310006122a3f4072c0806141b6e"


# CompressAI is pinned (compressai==1.2.8: setup.cfg, requirements-nodeps.txt): the streams are
# its rANS coder's output and the CDFs come from its pmf_to_quantized_cdf, so another version may
# write other bytes (tests/test_codec.py's golden streams would say so). Its two compiled modules
# are loaded from their files rather than imported:
# - compressai.ans (RansEncoder, BufferedRansEncoder, RansDecoder) is public API, but `import
#   compressai.ans` runs compressai/__init__.py first, which imports compressai.datasets and
#   torch_geometric: measured here 11-15 s in a fresh process and +1.8-2.1 s after torch and timm
#   (`python -X importtime -c "import compressai.ans"`), on every `stylecodec compress`; the file
#   itself loads in about a millisecond. It is registered under its public name, so compressai's
#   own `from compressai.ans import ...` reuses this very module (tests/test_entropy.py checks it).
# - compressai._CXX.pmf_to_quantized_cdf has no public API (its only caller in CompressAI is the
#   private EntropyModel._pmf_to_cdf).
def _compressai_ext(name: str):
    """CompressAI's compiled module ``compressai.<name>`` ("ans", "_CXX"), loaded from its file
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


def gaussian_conditional():
    """A CompressAI ``GaussianConditional`` holding these tables, for interoperability checks
    (imports all of CompressAI; coding here never needs it)."""
    from compressai.entropy_models import GaussianConditional     # here: the whole package takes 2-15 s to import

    t = tables()
    gc = GaussianConditional([float(v) for v in t.levels], scale_bound=float(t.levels[0]))
    width = max(t.cdf_lengths)
    gc._quantized_cdf = torch.tensor([list(c) + [0] * (width - len(c)) for c in t.cdfs], dtype=torch.int32)
    gc._cdf_length = torch.tensor(t.cdf_lengths, dtype=torch.int32)
    gc._offset = torch.tensor(t.offsets, dtype=torch.int32)
    return gc


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


# ---- rANS with CompressAI ---------------------------------------------------------------------

def _sub_table(indexes: Sequence[int]):
    """Only the CDF rows used (pybind copies every row passed): local indexes, cdfs, lengths, offsets."""
    t = tables()
    used = sorted(set(indexes))
    local = {k: i for i, k in enumerate(used)}
    return ([local[k] for k in indexes], [list(t.cdfs[k]) for k in used],
            [t.cdf_lengths[k] for k in used], [t.offsets[k] for k in used])


def _n_pad(n_symbols: int) -> int:
    """Zero symbols appended after the last layer (CompressAI's encoder overruns its buffer
    for fewer than 4 symbols; 8 leaves a margin)."""
    return max(0, MIN_CODED_SYMBOLS - n_symbols) if n_symbols else 0


def _safe_stream(data: bytes, n_symbols: int) -> bytes:
    """``data`` plus enough zero bytes that CompressAI's unchecked decoder stays in bounds
    whatever ``data`` holds: it reads 2 words to start, then per symbol at most 1 word plus
    one per escape nibble; escape nibbles are bounded by 17 per symbol once the reads hit
    zeros, plus 32 words per byte of ``data`` (every nibble of data = 15)."""
    return data + bytes(4 * (8 + 280 * n_symbols + 32 * len(data)))


def _rans_decode(data: bytes, indexes: list[int]) -> list[int]:
    if not indexes:
        return []
    loc, cdfs, lengths, offsets = _sub_table(indexes)
    dec = _compressai_ext("ans").RansDecoder()
    return list(dec.decode_with_indexes(_safe_stream(data, len(indexes)), loc, cdfs, lengths, offsets))


def _split(raw: bytes, symbols: list[int], indexes: list[int], ends: list[int]) -> list[bytes]:
    """Cut the rANS string into layer payloads. ``ends[k]`` is the number of symbols in
    layers 0..k. The prefix kept for layers 0..k is the shortest one, found by dropping bytes
    from the end while the (zero-padding) decoder still returns those symbols."""
    cuts, n = [], len(raw)
    for end in reversed(ends):
        while n > 0 and _rans_decode(raw[:n - 1], indexes[:end]) == symbols[:end]:
            n -= 1
        cuts.append(n)
    cuts.reverse()
    return [raw[a:b] for a, b in zip([0] + cuts[:-1], cuts)]


def _encode_layers(symbols: list[int], indexes: list[int], layer_ends: list[int]) -> list[bytes]:
    """Canonical payloads for all layers (one-shot; the reference the decoder compares to)."""
    pad = _n_pad(len(symbols))
    syms, idx = symbols + [0] * pad, indexes + [0] * pad
    if not syms:
        return [b"" for _ in layer_ends]
    loc, cdfs, lengths, offsets = _sub_table(idx)
    raw = _compressai_ext("ans").RansEncoder().encode_with_indexes(syms, loc, cdfs, lengths, offsets)
    return _split(raw, syms, idx, layer_ends[:-1] + [len(syms)])


class StreamEncoder:
    """Codes all layers of one image into ONE rANS string, cut into per-layer payloads such
    that the payloads of layers 0..k alone decode layers 0..k (rANS decodes from the front).
    This pays the coder's termination overhead once per stream, not once per layer.

    Per group (any number of elements, for causal / autoregressive models):
    ``ŷ = enc.encode(y, means, scales)`` (ŷ feeds the parameters of later groups); call
    ``enc.end_layer()`` after each layer's groups, then ``payloads = enc.finish()``."""

    def __init__(self):
        self._enc = _compressai_ext("ans").BufferedRansEncoder()
        self._symbols: list[int] = []
        self._indexes: list[int] = []
        self._layer_ends: list[int] = []
        self._done = False

    def encode(self, y, means, scales) -> torch.Tensor:
        """Queue one group of the current layer; returns ŷ shaped like ``means`` (as decoded)."""
        if self._done:
            raise RuntimeError("StreamEncoder.finish() was already called")
        s, idx = quantize(y, means).tolist(), scale_indexes(scales).tolist()
        if len(s) != len(idx):
            raise ValueError(f"{len(s)} latents but {len(idx)} scales")
        if s:
            loc, cdfs, lengths, offsets = _sub_table(idx)
            self._enc.encode_with_indexes(s, loc, cdfs, lengths, offsets)
        self._symbols += s
        self._indexes += idx
        return dequantize(s, means)

    def end_layer(self) -> None:
        """Close the current layer (a layer may be empty)."""
        self._layer_ends.append(len(self._symbols))

    def finish(self) -> list[bytes]:
        """One payload per layer (a trailing unclosed layer is closed)."""
        if self._done:
            raise RuntimeError("StreamEncoder.finish() was already called")
        self._done = True
        if not self._layer_ends or self._layer_ends[-1] != len(self._symbols):
            self.end_layer()
        pad = _n_pad(len(self._symbols))
        if not self._symbols:
            return [b"" for _ in self._layer_ends]
        syms, idx = self._symbols + [0] * pad, self._indexes + [0] * pad
        if pad:
            loc, cdfs, lengths, offsets = _sub_table(idx[-pad:])
            self._enc.encode_with_indexes(syms[-pad:], loc, cdfs, lengths, offsets)
        return _split(self._enc.flush(), syms, idx, self._layer_ends[:-1] + [len(syms)])


class StreamDecoder:
    """Decodes the payloads of the layers present (a prefix of the layers), group by group,
    mirroring :class:`StreamEncoder`: ``ŷ = dec.decode(means, scales)``, then ``dec.finish()``.

    ``layer_sizes`` gives the element count of *every* layer of the model; ``payloads`` holds
    the first ``len(payloads)`` layers. When all layers are present, :meth:`finish` re-encodes
    the decoded symbols and requires the identical payloads, so damage that a CRC missed is
    still detected; with layers missing only the range of the symbols can be checked."""

    def __init__(self, payloads: Sequence[bytes], layer_sizes: Sequence[int]):
        if not 0 < len(payloads) <= len(layer_sizes):
            raise ValueError(f"{len(payloads)} payloads for a model of {len(layer_sizes)} layers")
        self._payloads = [bytes(p) for p in payloads]
        self._sizes = [int(n) for n in layer_sizes]
        self._complete = len(payloads) == len(layer_sizes)
        self._n = sum(self._sizes[:len(payloads)])
        self._symbols: list[int] = []
        self._indexes: list[int] = []
        self._done = False
        self._dec = _compressai_ext("ans").RansDecoder()
        self._dec.set_stream(_safe_stream(b"".join(self._payloads), self._n + _n_pad(sum(self._sizes))))

    @property
    def remaining(self) -> int:
        """Symbols of the present layers not decoded yet."""
        return self._n - len(self._symbols)

    def _fail(self, what: str) -> BitstreamError:
        k = 0
        while k + 1 < len(self._sizes) and sum(self._sizes[:k + 1]) <= len(self._symbols):
            k += 1
        name = LAYER_NAMES[k] if k < len(LAYER_NAMES) else str(k)
        return BitstreamError(f"entropy-coded data damaged near layer {k} ({name}): {what}")

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
        if idx:
            loc, cdfs, lengths, offsets = _sub_table(idx)
            s = list(self._dec.decode_stream(loc, cdfs, lengths, offsets))
            if any(abs(v) > SYMBOL_MAX for v in s):
                raise self._fail("a symbol is out of range")
        self._symbols += s
        self._indexes += idx
        return dequantize(s, means)

    def finish(self) -> None:
        """Check the stream (see the class docstring); raises :class:`BitstreamError`."""
        if self._done:
            return
        self._done = True
        if self.remaining:
            raise ValueError(f"{self.remaining} symbols of the present layers were not decoded")
        if not self._complete:
            return
        pad = _n_pad(self._n)
        if pad and any(_rans_decode_tail(self._dec, pad)):
            raise self._fail("non-zero padding symbols")
        ends = list(itertools.accumulate(self._sizes))
        if _encode_layers(self._symbols, self._indexes, ends) != self._payloads:
            raise self._fail("the payloads are not what the encoder writes for the decoded symbols")


def _rans_decode_tail(dec, n: int) -> list[int]:
    loc, cdfs, lengths, offsets = _sub_table([0] * n)
    return list(dec.decode_stream(loc, cdfs, lengths, offsets))


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
    """Exact cost in bits, per element (flat float64), of coding y with the quantised tables:
    −log2 of the 16-bit frequency, plus the escape nibbles of out-of-table symbols. The rANS
    payload is this sum plus the coder's flush/termination overhead."""
    t = tables()
    s = quantize(y, means).tolist()
    idx = scale_indexes(scales).tolist()
    bits = []
    for v, k in zip(s, idx):
        cdf, top = t.cdfs[k], t.cdf_lengths[k] - 2
        value = v - t.offsets[k]
        if 0 <= value < top:
            bits.append(PRECISION - math.log2(cdf[value + 1] - cdf[value]))
            continue
        raw = -2 * value - 1 if value < 0 else 2 * (value - top)
        n_nibbles = (raw.bit_length() + 3) // 4
        bits.append(PRECISION - math.log2(cdf[top + 1] - cdf[top]) + 4 * (n_nibbles // 15 + 1 + n_nibbles))
    return torch.tensor(bits, dtype=torch.float64)

