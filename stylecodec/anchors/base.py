"""What every anchor shares: the result type, the external-tool runner and the colour conversion.

Pixel format of the video anchors (VVC, HEVC, AV1): the RGB image is converted here, in
numpy, to Y'CbCr 4:2:0 with the **BT.601 matrix in full range** (the JFIF/JPEG
convention, H.273 matrix_coefficients 5/6 with video_full_range_flag 1), coded as 8 bits
per sample, and converted back with the same matrix. Chroma is subsampled by a 2x2 mean
(chroma sited at the centre of each 2x2 block) and upsampled with the matching centred
bilinear filter. Full range keeps all 256 code values (limited range, 16..235, loses
about 14 % of them); the codecs never see the range, and no VUI tells them, because the
conversion is ours at both ends. ``full_range=False`` gives the limited-range variant.
Doing the conversion here (not in FFmpeg's swscale) gives every video codec identical
YUV input and makes the round trip exact up to rounding and 4:2:0 chroma: 53.3 dB PSNR
on a 256x256 UTKFace face without coding (51.3 dB in limited range), 53.3 dB through
lossless AV1 (CRF 0) and VVC at QP 0.

External programs run through :func:`run_tool`: a timeout, output captured, and any
failure (missing program, non-zero exit, timeout) raised as :class:`AnchorError` with the
command and the tail of its stderr. Temporary files live in a ``TemporaryDirectory``
(:func:`workdir`) that is removed whatever happens.
"""
from __future__ import annotations

import re
import resource
import shlex
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import imageio_ffmpeg
import numpy as np

from ..errors import StylecodecError

__all__ = ["AnchorError", "EncodedImage", "Anchor", "YuvAnchor", "ffmpeg_exe", "ffmpeg_codecs", "run_tool",
           "run_ffmpeg", "read_output", "workdir", "check_image", "rgb_to_yuv420", "yuv420_to_rgb", "pack_yuv420",
           "unpack_yuv420"]

DEFAULT_TIMEOUT_S = 300.0
_TAIL_LINES = 12


class AnchorError(StylecodecError):
    """An anchor codec failed: missing program, bad option, encoder or decoder error, timeout."""


@dataclass(frozen=True)
class EncodedImage:
    """One coded image: the bytes as stored, and the bytes a receiver must get per image.

    ``payload_bytes`` leaves out what a sender and receiver can agree in advance (VVC/HEVC
    VPS/SPS/PPS and start codes, AV1 sequence header; see :mod:`.nal`); equal to
    ``len(data)`` for image formats. ``meta`` holds codec facts worth keeping (e.g.
    ``qp_used``, ``slice_bytes``, timings from :meth:`Anchor.roundtrip`).
    """

    data: bytes
    payload_bytes: int
    anchor: str
    q: float
    shape: tuple[int, int]
    meta: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def bpp(self, payload: bool = False) -> float:
        """Bits per pixel of the coded face (H x W of ``shape``)."""
        n = self.payload_bytes if payload else self.nbytes
        return 8.0 * n / (self.shape[0] * self.shape[1])


# ---------------------------------------------------------------- running external tools

@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the FFmpeg bundled with ``imageio-ffmpeg`` (never a system install)."""
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # ImportError or its own RuntimeError when the binary is missing
        raise AnchorError(f"the FFmpeg of imageio-ffmpeg is unavailable: {e}") from e


_ERROR_WORDS = re.compile(r"error|unknown|invalid|cannot|unable|failed|not found|not supported", re.I)


def _tail(text: str) -> str:
    """The lines that explain a failure: the first few naming an error (the cause), then the last few."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    keep = [i for i, ln in enumerate(lines) if _ERROR_WORDS.search(ln)][: _TAIL_LINES // 2]
    keep += range(max(0, len(lines) - _TAIL_LINES // 2), len(lines))
    return "\n".join(lines[i] for i in sorted(set(keep)))


def run_tool(args: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S, what: str | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run an external program; any failure becomes :class:`AnchorError` (stderr tail included)."""
    args = [str(a) for a in args]
    what = what or Path(args[0]).name
    cmd = shlex.join(args)
    try:
        r = subprocess.run(args, capture_output=True, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise AnchorError(f"{what}: program not found ({args[0]})") from e
    except PermissionError as e:
        raise AnchorError(f"{what}: cannot execute {args[0]} ({e})") from e
    except subprocess.TimeoutExpired as e:
        err = (e.stderr or b"").decode("utf-8", "replace")
        raise AnchorError(f"{what} timed out after {timeout:g} s: {cmd}\n{_tail(err)}") from e
    if r.returncode != 0:
        err = r.stderr.decode("utf-8", "replace") + r.stdout.decode("utf-8", "replace")
        raise AnchorError(f"{what} failed (exit {r.returncode}): {cmd}\n{_tail(err)}")
    return r


def run_ffmpeg(args: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S,
               loglevel: str = "error") -> subprocess.CompletedProcess:
    """``ffmpeg -hide_banner -nostdin -y -loglevel LEVEL ARGS`` through :func:`run_tool`."""
    return run_tool([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", loglevel, *args],
                    timeout=timeout, what="ffmpeg")


@lru_cache(maxsize=None)
def ffmpeg_codecs(kind: str = "encoders") -> frozenset[str]:
    """Names of the bundled FFmpeg's ``encoders`` or ``decoders``."""
    out = run_tool([ffmpeg_exe(), "-hide_banner", f"-{kind}"], timeout=60, what="ffmpeg").stdout.decode()
    return frozenset(m.group(1) for m in re.finditer(r"^ [A-Z.]{6} (\S+)", out, re.M))


def read_output(path: Path, what: str) -> bytes:
    """The bytes a tool wrote to ``path``; AnchorError when it wrote nothing."""
    data = path.read_bytes() if path.is_file() else b""
    if not data:
        raise AnchorError(f"{what} produced no output ({path.name})")
    return data


@contextmanager
def workdir() -> Iterator[Path]:
    """A private temporary folder, removed on exit even when the codec fails."""
    with tempfile.TemporaryDirectory(prefix="stylecodec-anchor-") as d:
        yield Path(d)


# ---------------------------------------------------------------- colour conversion

_KR, _KB = 0.299, 0.114  # BT.601
_KG = 1.0 - _KR - _KB


def check_image(img: np.ndarray) -> np.ndarray:
    """The image as a contiguous H x W x 3 uint8 array, or :class:`AnchorError`."""
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 2 or a.shape[1] < 2:
        raise AnchorError(f"expected an H x W x 3 uint8 RGB image (H, W >= 2), got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a)


def _pad_even(a: np.ndarray) -> np.ndarray:
    ph, pw = a.shape[0] % 2, a.shape[1] % 2
    return np.pad(a, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else a


def _levels(bit_depth: int, full_range: bool) -> tuple[float, float, float]:
    """(luma offset, luma scale, chroma scale) of H.273 for this bit depth and range."""
    if full_range:
        m = float(2 ** bit_depth - 1)
        return 0.0, m, m
    s = float(2 ** (bit_depth - 8))
    return 16.0 * s, 219.0 * s, 224.0 * s


def rgb_to_yuv420(img: np.ndarray, bit_depth: int = 8, full_range: bool = True) -> tuple[np.ndarray, ...]:
    """RGB uint8 -> integer (Y, Cb, Cr) planes, BT.601, 4:2:0 by 2x2 mean. Odd sizes are edge-padded."""
    rgb = _pad_even(check_image(img)).astype(np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = _KR * r + _KG * g + _KB * b
    cb = (b - y) / (2.0 * (1.0 - _KB))
    cr = (r - y) / (2.0 * (1.0 - _KR))
    h, w = y.shape
    cb = cb.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    cr = cr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    off, ys, cs = _levels(bit_depth, full_range)
    mid, top = 2 ** (bit_depth - 1), 2 ** bit_depth - 1
    dt = np.uint8 if bit_depth <= 8 else np.uint16
    return (np.clip(np.rint(off + ys * y), 0, top).astype(dt),
            np.clip(np.rint(mid + cs * cb), 0, top).astype(dt),
            np.clip(np.rint(mid + cs * cr), 0, top).astype(dt))


def _upsample2(c: np.ndarray) -> np.ndarray:
    """Centred 2x bilinear upsampling (weights 3/4, 1/4), edges clamped."""
    def along(a: np.ndarray, axis: int) -> np.ndarray:
        n = a.shape[axis]
        prev = np.take(a, np.clip(np.arange(n) - 1, 0, n - 1), axis=axis)
        nxt = np.take(a, np.clip(np.arange(n) + 1, 0, n - 1), axis=axis)
        even, odd = 0.75 * a + 0.25 * prev, 0.75 * a + 0.25 * nxt
        out = np.stack([even, odd], axis=axis + 1)
        shape = list(a.shape)
        shape[axis] = 2 * n
        return out.reshape(shape)

    return along(along(c, 0), 1)


def yuv420_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, shape: tuple[int, int] | None = None,
                  bit_depth: int = 8, full_range: bool = True) -> np.ndarray:
    """Inverse of :func:`rgb_to_yuv420` (same matrix and range), cropped to ``shape`` if given."""
    off, ys, cs = _levels(bit_depth, full_range)
    mid = 2 ** (bit_depth - 1)
    yy = (y.astype(np.float64) - off) / ys
    pb = _upsample2((cb.astype(np.float64) - mid) / cs)
    pr = _upsample2((cr.astype(np.float64) - mid) / cs)
    r = yy + 2.0 * (1.0 - _KR) * pr
    b = yy + 2.0 * (1.0 - _KB) * pb
    g = (yy - _KR * r - _KB * b) / _KG
    rgb = np.clip(np.rint(np.stack([r, g, b], axis=-1) * 255.0), 0, 255).astype(np.uint8)
    if shape is not None:
        rgb = rgb[: shape[0], : shape[1]]
    return np.ascontiguousarray(rgb)


def pack_yuv420(planes: Sequence[np.ndarray], bit_depth: int = 8) -> bytes:
    """Planar I420 bytes: ``yuv420p`` (8 bits) or ``yuv420p10le`` style (16-bit little endian)."""
    dt = np.dtype(np.uint8) if bit_depth <= 8 else np.dtype("<u2")
    return b"".join(np.ascontiguousarray(p, dtype=dt).tobytes() for p in planes)


def unpack_yuv420(buf: bytes, height: int, width: int, bit_depth: int = 8) -> tuple[np.ndarray, ...]:
    """Inverse of :func:`pack_yuv420` for an even ``height`` x ``width`` frame."""
    dt = np.dtype(np.uint8) if bit_depth <= 8 else np.dtype("<u2")
    n_y, n_c = height * width, (height // 2) * (width // 2)
    need = (n_y + 2 * n_c) * dt.itemsize
    if len(buf) != need:
        raise AnchorError(f"decoder returned {len(buf)} bytes, expected {need} for one {width}x{height} 4:2:0 frame")
    a = np.frombuffer(buf, dtype=dt)
    return (a[:n_y].reshape(height, width),
            a[n_y:n_y + n_c].reshape(height // 2, width // 2),
            a[n_y + n_c:].reshape(height // 2, width // 2))


# ---------------------------------------------------------------- anchors

def _cpu_s() -> float:
    """CPU seconds used so far by this process and its finished child processes."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


class Anchor(ABC):
    """A reference codec: ``encode(rgb, q) -> EncodedImage`` and ``decode(data, (H, W)) -> rgb``.

    ``quality_name`` names the quality parameter, ``q_range`` its (min, max), and
    ``higher_is_better`` whether a larger value means better quality (JPEG quality)
    rather than coarser (QP, CRF, distance). ``sweep_values`` runs from best quality to
    coarsest, so bytes fall along it. ``optional``: it needs something a machine may lack (the
    linear prior: training faces), so an evaluation leaves it out with a note when
    :meth:`check_available` fails, where a missing video encoder stops the run.
    """

    name: str = "anchor"
    quality_name: str = "q"
    q_range: tuple[float, float] = (0, 0)
    higher_is_better: bool = False
    sweep_values: tuple[float, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    optional: bool = False
    ffmpeg_encoder: str | None = None
    ffmpeg_decoder: str | None = None

    def check_available(self) -> None:
        """Raise :class:`AnchorError` when the codec cannot run here (its FFmpeg encoder/decoder missing)."""
        for kind, codec in (("encoders", self.ffmpeg_encoder), ("decoders", self.ffmpeg_decoder)):
            if codec and codec not in ffmpeg_codecs(kind):
                raise AnchorError(f"{self.name}: the bundled FFmpeg ({ffmpeg_exe()}) has no {codec} {kind[:-1]}")

    def prepare(self) -> None:
        """Load or build what :meth:`encode` / :meth:`decode` need (the linear prior's PCA), so that it
        is not timed as the first image's encoding; AnchorError when that fails. Nothing by default."""

    def check_q(self, q: float) -> None:
        lo, hi = self.q_range
        if not lo <= q <= hi:
            raise AnchorError(f"{self.name}: {self.quality_name}={q} outside [{lo}, {hi}]")

    @abstractmethod
    def encode(self, img: np.ndarray, q: float) -> EncodedImage:
        """Code one H x W x 3 uint8 RGB image at quality ``q``."""

    @abstractmethod
    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        """Decode to an H x W x 3 uint8 RGB image of ``shape`` = (H, W)."""

    def roundtrip(self, img: np.ndarray, q: float) -> tuple[EncodedImage, np.ndarray]:
        """Encode then decode, timed: ``meta`` gets wall seconds ``encode_s`` / ``decode_s`` and
        CPU seconds ``encode_cpu_s`` / ``decode_cpu_s`` (this process and its child programs)."""
        c0, t0 = _cpu_s(), time.perf_counter()
        enc = self.encode(img, q)
        c1, t1 = _cpu_s(), time.perf_counter()
        rec = self.decode(enc.data, enc.shape)
        c2, t2 = _cpu_s(), time.perf_counter()
        enc.meta.update(encode_s=t1 - t0, decode_s=t2 - t1, encode_cpu_s=c1 - c0, decode_cpu_s=c2 - c1)
        return enc, rec

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class YuvAnchor(Anchor):
    """A codec fed with raw planar YUV 4:2:0 from :func:`rgb_to_yuv420` (see the module doc).

    Subclasses implement :meth:`_encode_yuv` (raw YUV file -> coded bytes) and
    :meth:`_decode_yuv` (coded bytes -> raw YUV bytes at ``coded_bit_depth``).
    ``input_bit_depth`` is the sample size of the raw file given to the encoder
    (10 for libvvenc, which only takes ``yuv420p10le``: 8-bit values shifted left by 2).
    """

    coded_bit_depth: int = 8
    input_bit_depth: int = 8
    full_range: bool = True

    def encode(self, img: np.ndarray, q: float) -> EncodedImage:
        img = check_image(img)
        self.check_q(q)
        h, w = img.shape[:2]
        planes = rgb_to_yuv420(img, self.coded_bit_depth, self.full_range)
        shift = self.input_bit_depth - self.coded_bit_depth
        if shift < 0:
            raise AnchorError(f"{self.name}: input bit depth {self.input_bit_depth} < coded {self.coded_bit_depth}")
        if shift:
            planes = tuple(p.astype(np.uint16) << shift for p in planes)
        ch, cw = planes[0].shape
        with workdir() as d:
            src = d / "input.yuv"
            src.write_bytes(pack_yuv420(planes, self.input_bit_depth))
            data, meta = self._encode_yuv(src, cw, ch, q, d)
        payload, more = self._payload(data)
        meta.update(more)
        return EncodedImage(data=data, payload_bytes=payload, anchor=self.name, q=q, shape=(h, w), meta=meta)

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        h, w = int(shape[0]), int(shape[1])
        ch, cw = h + h % 2, w + w % 2
        with workdir() as d:
            raw = self._decode_yuv(data, d)
        planes = unpack_yuv420(raw, ch, cw, self.coded_bit_depth)
        return yuv420_to_rgb(*planes, shape=(h, w), bit_depth=self.coded_bit_depth, full_range=self.full_range)

    def _payload(self, data: bytes) -> tuple[int, dict]:
        """(payload bytes, extra meta) of a coded stream; the whole stream by default."""
        return len(data), {}

    @abstractmethod
    def _encode_yuv(self, src: Path, width: int, height: int, q: float, tmp: Path) -> tuple[bytes, dict]:
        """Code the raw YUV file ``src`` (``width`` x ``height``); return (stream, meta)."""

    @abstractmethod
    def _decode_yuv(self, data: bytes, tmp: Path) -> bytes:
        """Decode a stream to raw planar YUV 4:2:0 at ``coded_bit_depth``."""

    # shared FFmpeg helpers -------------------------------------------------------------

    def _ffmpeg_raw_input(self, src: Path, width: int, height: int) -> list[str]:
        pix = "yuv420p" if self.input_bit_depth <= 8 else "yuv420p10le"
        return ["-f", "rawvideo", "-pix_fmt", pix, "-s", f"{width}x{height}", "-r", "1", "-i", str(src),
                "-frames:v", "1"]

    def _ffmpeg_decode(self, data: bytes, tmp: Path, demuxer: str, decoder: str, suffix: str) -> bytes:
        """Decode with FFmpeg to raw YUV in the stream's own sample format (no swscale conversion)."""
        stream, out = tmp / f"stream{suffix}", tmp / "decoded.yuv"
        stream.write_bytes(data)
        pix = "yuv420p" if self.coded_bit_depth <= 8 else "yuv420p10le"
        run_ffmpeg(["-f", demuxer, "-c:v", decoder, "-i", str(stream), "-frames:v", "1",
                    "-f", "rawvideo", "-pix_fmt", pix, str(out)], timeout=self.timeout_s)
        return read_output(out, f"{self.name} decoder")
