"""The public, versioned stylecodec container (spec: ``docs/bitstream.md``).

Layout of version 1 (all multi-byte integers big-endian)::

    0..2  magic  b"SFC"
    3     version (high nibble) | declared layer count n (2 bits) | 00 (reserved)
    4     log2(resolution) - 5 (high 3 bits) | quality index (low 5 bits)
    5..6  model fingerprint (u16)
    then, for each layer i = 0 (basic), 1 (middle), 2 (enhanced) that is present:
          length L_i (LEB128 varint, minimal, <= MAX_LAYER_BYTES) | CRC-8 | L_i payload bytes

The header is 7 bytes; each layer adds 2 bytes while its payload is under 128 bytes, so a
3-layer stream carries 13 bytes of container overhead.

Truncation rule: the header *declares* n layers; a stream that ends exactly on a layer
boundary after at least the basic layer is valid and holds that prefix of layers (this is
what a stream physically cut after a layer looks like). A stream that ends inside a
layer's length, CRC or payload is a truncated layer (an error, unless the caller asks to
drop the incomplete layer); bytes after the n declared layers are trailing garbage.
:func:`extract` rewrites the declared count, so ``extract(s, k)`` is byte-identical to
``pack`` of the first k payloads; the CRCs do not cover the count bits, so they survive.

Layer i's CRC-8 (SMBus: poly 0x07, init 0, no reflection) covers header bytes 3..6 (count
bits zeroed), the byte i, the length varint and the payload: damage to the header, a
layer moved to another slot, or a changed length are all detected.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Mapping, Sequence

import numpy as np

from .errors import StylecodecError
from .layers import LAYER_NAMES

__all__ = [
    "BitstreamError", "StreamHeader", "pack", "unpack", "extract", "describe", "fingerprint", "basic_prefix",
    "read_basic_prefix", "container_bytes", "crc8", "MAGIC", "VERSION", "MAX_LAYERS", "MAX_LAYER_BYTES",
    "HEADER_BYTES",
]

MAGIC = b"SFC"
VERSION = 1
MAX_LAYERS = len(LAYER_NAMES)
HEADER_BYTES = 7
MAX_LAYER_BYTES = 65535          # hard cap per layer payload; a varint above it is rejected
MAX_VARINT_BYTES = 3             # enough for MAX_LAYER_BYTES
MAX_STREAM_BYTES = HEADER_BYTES + MAX_LAYERS * (MAX_VARINT_BYTES + 1 + MAX_LAYER_BYTES)
MIN_LOG2_RES, MAX_LOG2_RES = 5, 12   # resolution 32 .. 4096, coded in 3 bits
MAX_QUALITY = 31                     # 5 bits
_COUNT_MASK = 0b0000_1100           # layer-count bits inside byte 3
_RESERVED_MASK = 0b0000_0011


class BitstreamError(StylecodecError, ValueError):
    """A stream cannot be read (or written): the message names the problem and the layer."""


@dataclasses.dataclass(frozen=True)
class StreamHeader:
    """Header fields. ``n_layers`` is the count declared in the header (``None`` in
    :func:`pack` means "the number of payloads"); ``resolution`` is the coded face side in
    pixels (a power of two, 32..4096); ``quality`` the rate-point index (0..31)."""

    resolution: int
    quality: int
    fingerprint: int
    n_layers: int | None = None
    version: int = VERSION


def _crc8_table() -> list[int]:
    table = []
    for byte in range(256):
        c = byte
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


_CRC8_TABLE = _crc8_table()


def crc8(data: bytes, crc: int = 0) -> int:
    """CRC-8/SMBus (x^8 + x^2 + x + 1, init 0, no reflection, no final xor); check("123456789") = 0xF4."""
    for b in data:
        crc = _CRC8_TABLE[crc ^ b]
    return crc


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _layer_crc(masked_header: bytes, i: int, length_field: bytes, payload: bytes) -> int:
    return crc8(payload, crc8(masked_header + bytes([i]) + length_field))


def _header_bytes(header: StreamHeader, n_layers: int) -> bytes:
    if header.version != VERSION:
        raise BitstreamError(f"cannot write bitstream version {header.version}: this writer makes version {VERSION}")
    if not 1 <= n_layers <= MAX_LAYERS:
        raise BitstreamError(f"a stream holds 1..{MAX_LAYERS} layers, got {n_layers}")
    res = int(header.resolution)
    log2 = res.bit_length() - 1
    if res <= 0 or res != 1 << log2 or not MIN_LOG2_RES <= log2 <= MAX_LOG2_RES:
        raise BitstreamError(f"resolution {res} is not a power of two in {1 << MIN_LOG2_RES}..{1 << MAX_LOG2_RES}")
    if not 0 <= int(header.quality) <= MAX_QUALITY:
        raise BitstreamError(f"quality index {header.quality} outside 0..{MAX_QUALITY}")
    if not 0 <= int(header.fingerprint) <= 0xFFFF:
        raise BitstreamError(f"fingerprint {header.fingerprint} is not a 16-bit value")
    b3 = (VERSION << 4) | (n_layers << 2)
    b4 = ((log2 - MIN_LOG2_RES) << 5) | int(header.quality)
    return MAGIC + bytes([b3, b4]) + int(header.fingerprint).to_bytes(2, "big")


def pack(header: StreamHeader, payloads: Sequence[bytes]) -> bytes:
    """Write a stream: ``payloads`` are the layer byte strings in order basic, middle, enhanced
    (a prefix of them). The declared count is ``len(payloads)``."""
    n = len(payloads)
    if header.n_layers is not None and header.n_layers != n:
        raise BitstreamError(f"header declares {header.n_layers} layers but {n} payloads were given")
    head = _header_bytes(header, n)
    masked = bytes([head[3] & ~_COUNT_MASK & 0xFF]) + head[4:]
    out = bytearray(head)
    for i, payload in enumerate(payloads):
        payload = bytes(payload)
        if len(payload) > MAX_LAYER_BYTES:
            raise BitstreamError(f"layer {i} ({LAYER_NAMES[i]}) payload of {len(payload)} bytes "
                                 f"exceeds the cap of {MAX_LAYER_BYTES}")
        length_field = _varint(len(payload))
        out += length_field + bytes([_layer_crc(masked, i, length_field, payload)]) + payload
    return bytes(out)


class _Truncated(BitstreamError):
    """Internal: the stream ends inside a layer (may be tolerated with ``allow_partial``)."""


def _read_varint(data: bytes, pos: int, i: int) -> tuple[int, int]:
    """Parse the length of layer i at ``pos``; returns (value, new position)."""
    value = 0
    for k in range(MAX_VARINT_BYTES):
        if pos + k >= len(data):
            raise _Truncated(f"truncated layer {i} ({LAYER_NAMES[i]}): stream ends inside its length field")
        b = data[pos + k]
        value |= (b & 0x7F) << (7 * k)
        if not b & 0x80:
            if k > 0 and b == 0:
                raise BitstreamError(f"layer {i} ({LAYER_NAMES[i]}): non-minimal length encoding")
            if value > MAX_LAYER_BYTES:
                raise BitstreamError(f"layer {i} ({LAYER_NAMES[i]}) length {value} exceeds the cap of "
                                     f"{MAX_LAYER_BYTES} bytes")
            return value, pos + k + 1
    raise BitstreamError(f"layer {i} ({LAYER_NAMES[i]}) length field longer than {MAX_VARINT_BYTES} bytes "
                         f"(length exceeds the cap of {MAX_LAYER_BYTES} bytes)")


def _parse(data, expected_fingerprint, allow_partial):
    """Returns (header, payloads, layer_spans) where spans are (start, end) of each layer record."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"a bitstream is bytes, got {type(data).__name__}")
    size = memoryview(data).nbytes
    if size > MAX_STREAM_BYTES:
        raise BitstreamError(f"stream of {size} bytes exceeds the cap of {MAX_STREAM_BYTES} bytes")
    data = bytes(data)
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            raise BitstreamError(f"truncated header: {len(data)} of {HEADER_BYTES} bytes")
        raise BitstreamError(f"bad magic {data[:3]!r}: not a stylecodec stream (expected {MAGIC!r})")
    if len(data) > 3:
        version = data[3] >> 4
        if version != VERSION:
            newer = " (newer than this decoder; upgrade stylecodec)" if version > VERSION else ""
            raise BitstreamError(f"unsupported bitstream version {version}{newer}; "
                                 f"this decoder reads version {VERSION}")
    if len(data) < HEADER_BYTES:
        raise BitstreamError(f"truncated header: {len(data)} of {HEADER_BYTES} bytes")
    b3, b4 = data[3], data[4]
    if b3 & _RESERVED_MASK:
        raise BitstreamError(f"reserved header bits set (byte 3 = 0x{b3:02x}): damaged or unsupported stream")
    n = (b3 & _COUNT_MASK) >> 2
    if n == 0:
        raise BitstreamError("header declares 0 layers: damaged stream")
    header = StreamHeader(resolution=1 << (MIN_LOG2_RES + (b4 >> 5)), quality=b4 & 0x1F,
                          fingerprint=int.from_bytes(data[5:7], "big"), n_layers=n)
    masked = bytes([b3 & ~_COUNT_MASK & 0xFF]) + data[4:HEADER_BYTES]
    payloads: list[bytes] = []
    spans: list[tuple[int, int]] = []
    pos = HEADER_BYTES
    for i in range(n):
        if pos == len(data):
            break                                   # cut on a layer boundary: a valid prefix
        start = pos
        try:
            length, pos = _read_varint(data, pos, i)
            if pos >= len(data):
                raise _Truncated(f"truncated layer {i} ({LAYER_NAMES[i]}): stream ends before its CRC")
            if pos + 1 + length > len(data):
                raise _Truncated(f"truncated layer {i} ({LAYER_NAMES[i]}): {len(data) - pos - 1} of "
                                 f"{length} payload bytes present")
        except _Truncated as e:
            if allow_partial and i > 0:
                break
            raise BitstreamError(str(e)) from None
        crc = data[pos]
        payload = data[pos + 1:pos + 1 + length]
        if _layer_crc(masked, i, data[start:pos], payload) != crc:
            raise BitstreamError(f"CRC mismatch in layer {i} ({LAYER_NAMES[i]}): header or payload damaged")
        pos += 1 + length
        payloads.append(payload)
        spans.append((start, pos))
    else:
        if pos != len(data):
            extra = len(data) - pos
            raise BitstreamError(f"trailing garbage: {extra} byte{'s' if extra != 1 else ''} after the "
                                 f"{n} declared layer{'s' if n != 1 else ''}")
    if not payloads:
        raise BitstreamError("truncated stream: the basic layer is missing (only the header is present)")
    if expected_fingerprint is not None and header.fingerprint != int(expected_fingerprint):
        raise BitstreamError(f"wrong model: stream was made by model 0x{header.fingerprint:04x}, "
                             f"this model is 0x{int(expected_fingerprint):04x} (fingerprint mismatch)")
    return header, payloads, spans


def unpack(data: bytes, expected_fingerprint: int | None = None, *,
           allow_partial: bool = False) -> tuple[StreamHeader, list[bytes]]:
    """Read a stream. Returns the header (``n_layers`` = declared count) and the payloads of
    the layers present (``len(payloads) <= header.n_layers``). Raises :class:`BitstreamError`.
    ``allow_partial=True`` drops an incomplete last layer (above basic) instead of raising."""
    header, payloads, _ = _parse(data, expected_fingerprint, allow_partial)
    return header, payloads


def container_bytes(payload_bytes: Sequence[int]) -> int:
    """Bytes of the container around payloads of these sizes: the header plus, per layer, its
    length varint and CRC (2 bytes while a payload is under 128 bytes)."""
    return HEADER_BYTES + sum(len(_varint(n)) + 1 for n in payload_bytes)


def _basic_end(data: bytes) -> int | None:
    """End offset of the basic-layer record (header, length varint, CRC, payload) as the first
    bytes declare it, or None when they do not tell (truncated or malformed: unpack says why)."""
    try:
        length, pos = _read_varint(data, HEADER_BYTES, 0)
    except BitstreamError:
        return None
    return pos + 1 + length


def basic_prefix(data: bytes) -> bytes:
    """The header + basic-layer record of a stream: a valid basic-only stream (the declared layer
    count stays as it is, which the container allows for a stream cut on a layer boundary)."""
    data = bytes(data)
    end = _basic_end(data)
    return data if end is None else data[:end]


def read_basic_prefix(path: str | os.PathLike) -> bytes:
    """Read only the header and basic layer of a .sfc file (at most 7 + 3 + 1 + 65535 bytes)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER_BYTES + MAX_VARINT_BYTES)
            end = _basic_end(head)
            if end is None or end <= len(head):
                return head if end is None else head[:end]
            return head + fh.read(end - len(head))
    except OSError as e:
        raise StylecodecError(f"cannot read {path}: {e.strerror or e}") from None


def extract(data: bytes, n_layers: int) -> bytes:
    """Rewrite a stream to its first ``n_layers`` layers (identical to packing them afresh)."""
    header, payloads = unpack(data)
    if not 1 <= n_layers <= len(payloads):
        raise BitstreamError(f"cannot extract {n_layers} layers: the stream holds {len(payloads)}")
    return pack(dataclasses.replace(header, n_layers=None), payloads[:n_layers])


def describe(data: bytes) -> dict:
    """Fields and byte accounting for ``stylecodec inspect``; raises like :func:`unpack`."""
    header, payloads, spans = _parse(data, None, False)
    layers = []
    for i, (payload, (start, end)) in enumerate(zip(payloads, spans)):
        layers.append({"index": i, "name": LAYER_NAMES[i], "payload_bytes": len(payload),
                       "overhead_bytes": end - start - len(payload), "total_bytes": end - start})
    total = len(data)
    payload_bytes = sum(len(p) for p in payloads)
    return {
        "version": header.version, "fingerprint": f"0x{header.fingerprint:04x}",
        "resolution": header.resolution, "quality": header.quality,
        "layers_declared": header.n_layers, "layers_present": len(payloads),
        "layers": layers, "header_bytes": HEADER_BYTES, "payload_bytes": payload_bytes,
        "overhead_bytes": total - payload_bytes, "total_bytes": total,
        "bpp": 8.0 * total / (header.resolution ** 2),
    }


def fingerprint(state_dict: Mapping[str, object]) -> int:
    """16-bit model fingerprint: the first two bytes (big-endian) of a sha256 over the tensors
    sorted by name, each as name, canonical dtype, shape and little-endian bytes (floating
    point as float32, integers as int64, bool as uint8). Non-tensor entries are ignored.
    Identical weights give the same value on any machine and device."""
    import torch     # here, not at module level: reading and extracting streams needs no torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu")
        if t.is_floating_point():
            arr, tag = t.to(torch.float32).contiguous().numpy().astype("<f4", copy=False), b"f4"
        elif t.dtype == torch.bool:
            arr, tag = t.to(torch.uint8).contiguous().numpy(), b"u1"
        elif t.is_complex():
            arr, tag = torch.view_as_real(t.to(torch.complex64)).contiguous().numpy().astype("<f4", copy=False), b"c8"
        else:
            arr, tag = t.to(torch.int64).contiguous().numpy().astype("<i8", copy=False), b"i8"
        h.update(name.encode("utf-8") + b"\0" + tag + repr(tuple(t.shape)).encode() + b"\0")
        h.update(np.ascontiguousarray(arr).tobytes())
    return int.from_bytes(h.digest()[:2], "big")
