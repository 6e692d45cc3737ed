"""The public, versioned stylecodec container (spec: ``docs/bitstream.md``).

Layout of version 2 (multi-byte integers big-endian)::

    0     0xA2: format (high nibble 0xA) | version 2 (low nibble)
    1     fingerprint: the first byte of the model's SHA-256 (its 16-bit fingerprint's high byte)
    2     log2(resolution) - 5 (bits 7-5) | quality index 0..7 (bits 4-2) | declared layer count n (bits 1-0)
    then, for each layer i = 0 (basic), 1 (middle), 2 (enhanced) that is present:
          i < n - 1:  length L_i (LEB128 varint, minimal, <= MAX_LAYER_BYTES) | C_i | L_i payload bytes
          i = n - 1:  C_i | payload: the rest of the stream (its length is the stream's)

A basic-only stream carries 4 bytes of container, a 3-layer stream 8 (payloads under 128 bytes).

Checks: C_i = CRC-8 (SMBus) of [bytes 0..2 with the count bits zeroed, i, varint(L_i), payload]
XOR K_i, the key byte 2 + i of the model's SHA-256. The key makes the CRCs a second model check:
a stream of another model passes the fingerprint byte with probability 2^-8 and then each layer's
CRC with probability 2^-8 (independent key bytes). Without the model (``key=None``: inspect,
extract) the structure is read and the CRCs are carried unchecked; they do not depend on whether
a length is written, so extracting or cutting a stream keeps them valid.

Truncation rule: the header *declares* n layers; a stream that ends exactly on a layer boundary
after at least the basic layer holds that prefix of layers (what a stream physically cut after a
layer looks like; a present layer has at least its CRC byte). A stream that ends inside an
explicit length, before a CRC or inside a payload of known length is a truncated layer. The last
layer's length is implicit, so a cut inside it, or bytes appended to it, read as damage to it,
caught by its CRC (2^-8 miss) and by the decoder's re-encoding check. :func:`extract` rewrites the
declared count and drops the new last layer's length: ``extract(s, k)`` is byte-identical to
``pack`` of the first k payloads.

Version 1 streams (``b"SFC"``, CompressAI rANS payloads) are refused with a message that names the
version (re-encode the image).
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
    "BitstreamError", "StreamHeader", "ModelKey", "pack", "unpack", "extract", "describe", "fingerprint",
    "model_digest", "model_digests", "stream_skip", "weights_id", "basic_prefix", "read_basic_prefix", "container_bytes", "crc8", "FORMAT", "VERSION",
    "MAX_LAYERS", "MAX_LAYER_BYTES", "HEADER_BYTES", "MAX_QUALITY", "V1_MAGIC",
]

FORMAT = 0xA                     # high nibble of byte 0
VERSION = 2
V1_MAGIC = b"SFC"                # version 1's first bytes
MAX_LAYERS = len(LAYER_NAMES)
HEADER_BYTES = 3
MAX_LAYER_BYTES = 65535          # hard cap per layer payload; a varint above it is rejected
MAX_VARINT_BYTES = 3             # enough for MAX_LAYER_BYTES
MAX_STREAM_BYTES = HEADER_BYTES + MAX_LAYERS * (MAX_VARINT_BYTES + 1 + MAX_LAYER_BYTES)
MIN_LOG2_RES, MAX_LOG2_RES = 5, 12   # resolution 32 .. 4096, coded in 3 bits
MAX_QUALITY = 7                      # 3 bits
_COUNT_MASK = 0b0000_0011            # declared layer count inside byte 2
KEY_OFFSET = 2                       # layer i's CRC key is byte KEY_OFFSET + i of the model digest


class BitstreamError(StylecodecError, ValueError):
    """A stream cannot be read (or written): the message names the problem and the layer."""


@dataclasses.dataclass(frozen=True)
class StreamHeader:
    """Header fields. ``n_layers`` is the count declared in the header (``None`` in
    :func:`pack` means "the number of payloads"); ``resolution`` is the coded face side in
    pixels (a power of two, 32..4096); ``quality`` the rate-point index (0..7); ``fingerprint``
    the stream's fingerprint byte (the first byte of the model's SHA-256; ``None`` in :func:`pack`:
    the key's)."""

    resolution: int
    quality: int
    fingerprint: int | None = None
    n_layers: int | None = None
    version: int = VERSION


@dataclasses.dataclass(frozen=True)
class ModelKey:
    """A model as its streams know it: the SHA-256 of its weights (:func:`model_digest`). Byte 0 is
    the stream's fingerprint byte, bytes 0..1 the model's 16-bit :func:`fingerprint` (shown by the
    CLI, kept with analysis heads and indexes), byte 2 + i keys layer i's CRC."""

    digest: bytes

    def __post_init__(self):
        if not isinstance(self.digest, bytes) or len(self.digest) != 32:
            raise ValueError("a model key is the 32-byte SHA-256 of the model's weights")

    @property
    def tag(self) -> int:
        return self.digest[0]

    @property
    def fingerprint(self) -> int:
        return int.from_bytes(self.digest[:2], "big")

    def crc_key(self, layer: int) -> int:
        return self.digest[KEY_OFFSET + layer]

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, object], skip: tuple[str, ...] = ()) -> "ModelKey":
        return cls(model_digest(state_dict, skip))


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


def _layer_crc(masked_header: bytes, i: int, length: int, payload: bytes, key: ModelKey) -> int:
    return crc8(payload, crc8(masked_header + bytes([i]) + _varint(length))) ^ key.crc_key(i)


def _header_bytes(header: StreamHeader, n_layers: int, key: ModelKey) -> bytes:
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
    if header.fingerprint is not None and int(header.fingerprint) != key.tag:
        raise BitstreamError(f"header fingerprint byte 0x{int(header.fingerprint):02x} is not the key's 0x{key.tag:02x}")
    b2 = ((log2 - MIN_LOG2_RES) << 5) | (int(header.quality) << 2) | n_layers
    return bytes([(FORMAT << 4) | VERSION, key.tag, b2])


def _masked(head: bytes) -> bytes:
    return head[:2] + bytes([head[2] & ~_COUNT_MASK & 0xFF])


def pack(header: StreamHeader, payloads: Sequence[bytes], key: ModelKey) -> bytes:
    """Write a stream: ``payloads`` are the layer byte strings in order basic, middle, enhanced
    (a prefix of them), ``key`` the model's (its fingerprint byte and CRC keys). The declared count
    is ``len(payloads)``."""
    n = len(payloads)
    if header.n_layers is not None and header.n_layers != n:
        raise BitstreamError(f"header declares {header.n_layers} layers but {n} payloads were given")
    head = _header_bytes(header, n, key)
    masked = _masked(head)
    out = bytearray(head)
    for i, payload in enumerate(payloads):
        payload = bytes(payload)
        if len(payload) > MAX_LAYER_BYTES:
            raise BitstreamError(f"layer {i} ({LAYER_NAMES[i]}) payload of {len(payload)} bytes "
                                 f"exceeds the cap of {MAX_LAYER_BYTES}")
        if i < n - 1:
            out += _varint(len(payload))
        out += bytes([_layer_crc(masked, i, len(payload), payload, key)]) + payload
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


def _check_start(data: bytes) -> None:
    """Format, version and header length, from the first bytes."""
    if not data:
        raise BitstreamError(f"truncated header: 0 of {HEADER_BYTES} bytes")
    if data[:len(V1_MAGIC)] == V1_MAGIC or (len(data) < len(V1_MAGIC) and V1_MAGIC.startswith(data)):
        raise BitstreamError(f"bitstream version 1 (a stream starting \"SFC\") is no longer read: this decoder reads "
                             f"version {VERSION}; encode the image again")
    if data[0] >> 4 != FORMAT:
        raise BitstreamError(f"bad magic 0x{data[0]:02x}: not a stylecodec stream (expected 0x{(FORMAT << 4) | VERSION:02x})")
    version = data[0] & 0x0F
    if version != VERSION:
        newer = " (newer than this decoder; upgrade stylecodec)" if version > VERSION else ""
        raise BitstreamError(f"unsupported bitstream version {version}{newer}; this decoder reads version {VERSION}")
    if len(data) < HEADER_BYTES:
        raise BitstreamError(f"truncated header: {len(data)} of {HEADER_BYTES} bytes")


def _parse(data, key: ModelKey | None, allow_partial: bool):
    """Returns (header, payloads, layer_spans) where spans are (start, end) of each layer record."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"a bitstream is bytes, got {type(data).__name__}")
    size = memoryview(data).nbytes
    if size > MAX_STREAM_BYTES:
        raise BitstreamError(f"stream of {size} bytes exceeds the cap of {MAX_STREAM_BYTES} bytes")
    data = bytes(data)
    _check_start(data)
    b2 = data[2]
    n = b2 & _COUNT_MASK
    if n == 0:
        raise BitstreamError("header declares 0 layers: damaged stream")
    header = StreamHeader(resolution=1 << (MIN_LOG2_RES + (b2 >> 5)), quality=(b2 >> 2) & 0x07,
                          fingerprint=data[1], n_layers=n)
    records: list[tuple[int, bytes]] = []           # (CRC, payload)
    spans: list[tuple[int, int]] = []
    pos = HEADER_BYTES
    for i in range(n):
        if pos == len(data):
            break                                   # cut on a layer boundary: a valid prefix
        start = pos
        if i == n - 1:                              # the last layer: its CRC, then the rest
            if len(data) - pos - 1 > MAX_LAYER_BYTES:
                raise BitstreamError(f"layer {i} ({LAYER_NAMES[i]}) length {len(data) - pos - 1} exceeds the cap of "
                                     f"{MAX_LAYER_BYTES} bytes")
            records.append((data[pos], data[pos + 1:]))
            spans.append((start, len(data)))
            pos = len(data)
            break
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
        records.append((data[pos], data[pos + 1:pos + 1 + length]))
        pos += 1 + length
        spans.append((start, pos))
    if not records:
        raise BitstreamError("truncated stream: the basic layer is missing (only the header is present)")
    if key is not None:
        records = _check_model(data, header, records, key, allow_partial)
        spans = spans[:len(records)]
    return header, [p for _, p in records], spans


def _check_model(data: bytes, header: StreamHeader, records: list, key: ModelKey, allow_partial: bool) -> list:
    """The fingerprint byte, then each layer's keyed CRC (module docstring)."""
    if header.fingerprint != key.tag:
        raise BitstreamError(f"wrong model: stream was made by model 0x{header.fingerprint:02x}.., this model is "
                             f"0x{key.fingerprint:04x} (fingerprint mismatch)")
    masked = _masked(data[:HEADER_BYTES])
    bad = [i for i, (crc, payload) in enumerate(records) if _layer_crc(masked, i, len(payload), payload, key) != crc]
    if not bad:
        return records
    last = len(records) - 1
    if bad == [last] and last > 0 and allow_partial:
        return records[:last]                       # an incomplete last layer (partial download)
    if len(bad) == len(records) > 1:
        raise BitstreamError(f"CRC mismatch in every layer: header damaged, or the stream was made by another model "
                             f"whose fingerprint starts with 0x{key.tag:02x} too")
    i = bad[0]
    implicit = i == last and header.n_layers == len(records)
    what = "payload damaged, truncated or extended" if implicit else "header or payload damaged"
    raise BitstreamError(f"CRC mismatch in layer {i} ({LAYER_NAMES[i]}): {what}")


def unpack(data: bytes, key: ModelKey | None = None, *,
           allow_partial: bool = False) -> tuple[StreamHeader, list[bytes]]:
    """Read a stream. Returns the header (``n_layers`` = declared count) and the payloads of
    the layers present (``len(payloads) <= header.n_layers``). Raises :class:`BitstreamError`.
    ``key``: the model's; its fingerprint byte and the keyed CRCs are checked (without it, only
    the structure). ``allow_partial=True`` drops an incomplete last layer (above basic) instead of
    raising: one that ends inside its record, or (with ``key``) a last layer whose CRC fails."""
    header, payloads, _ = _parse(data, key, allow_partial)
    return header, payloads


def container_bytes(payload_bytes: Sequence[int]) -> int:
    """Bytes of the container around payloads of these sizes: the header, per layer its CRC, and
    the length varint of every layer but the last (1 byte while a payload is under 128 bytes)."""
    return HEADER_BYTES + len(payload_bytes) + sum(len(_varint(n)) for n in payload_bytes[:-1])


def _basic_end(data: bytes) -> int | None:
    """End offset of the basic-layer record as the first bytes declare it (the whole stream when
    the basic layer is its last), or None when they do not tell (truncated or malformed: unpack
    says why)."""
    if len(data) < HEADER_BYTES or data[2] & _COUNT_MASK <= 1:
        return None
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
    """Read only the header and basic layer of a .sfc file (at most MAX_STREAM_BYTES)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER_BYTES + MAX_VARINT_BYTES)
            end = _basic_end(head)
            if end is None:
                return head + fh.read(MAX_STREAM_BYTES + 1 - len(head))
            if end <= len(head):
                return head[:end]
            return head + fh.read(end - len(head))
    except OSError as e:
        raise StylecodecError(f"cannot read {path}: {e.strerror or e}") from None


def extract(data: bytes, n_layers: int) -> bytes:
    """Rewrite a stream to its first ``n_layers`` layers (identical to packing them afresh with the
    model's key; needs no model: the CRCs are carried as they are)."""
    header, payloads, spans = _parse(data, None, False)
    if not 1 <= n_layers <= len(payloads):
        raise BitstreamError(f"cannot extract {n_layers} layers: the stream holds {len(payloads)}")
    data = bytes(data)
    crcs = [data[start + (end - start - len(p) - 1)] for p, (start, end) in zip(payloads, spans)]
    out = bytearray(data[:2] + bytes([(data[2] & ~_COUNT_MASK & 0xFF) | n_layers]))
    for i in range(n_layers):
        if i < n_layers - 1:
            out += _varint(len(payloads[i]))
        out += bytes([crcs[i]]) + payloads[i]
    return bytes(out)


def describe(data: bytes, key: ModelKey | None = None) -> dict:
    """Fields and byte accounting for ``stylecodec inspect``; raises like :func:`unpack` (with
    ``key``, the fingerprint byte and CRCs are checked too)."""
    header, payloads, spans = _parse(data, key, False)
    layers = []
    for i, (payload, (start, end)) in enumerate(zip(payloads, spans)):
        layers.append({"index": i, "name": LAYER_NAMES[i], "payload_bytes": len(payload),
                       "overhead_bytes": end - start - len(payload), "total_bytes": end - start})
    total = len(data)
    payload_bytes = sum(len(p) for p in payloads)
    return {
        "version": header.version, "fingerprint": f"0x{header.fingerprint:02x}",
        "resolution": header.resolution, "quality": header.quality,
        "layers_declared": header.n_layers, "layers_present": len(payloads),
        "layers": layers, "header_bytes": HEADER_BYTES, "payload_bytes": payload_bytes,
        "overhead_bytes": total - payload_bytes, "total_bytes": total,
        "bpp": 8.0 * total / (header.resolution ** 2), "crc_checked": key is not None,
    }


def model_digest(state_dict: Mapping[str, object], skip: tuple[str, ...] = ()) -> bytes:
    """SHA-256 over the tensors sorted by name, each as name, canonical dtype, shape and
    little-endian bytes (floating point as float32, integers as int64, bool as uint8). Non-tensor
    entries and names starting with a ``skip`` prefix are ignored. Identical weights give the same
    digest on any machine and device."""
    import torch     # here, not at module level: reading and extracting streams needs no torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor) or (skip and name.startswith(skip)):
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
    return h.digest()


def stream_skip(model) -> tuple[str, ...]:
    """State-dict prefixes left out of ``model``'s stream key (pixel-only weights; none for the W+ codec)."""
    return tuple(getattr(model, "PIXEL_ONLY_PREFIXES", ()))


def model_digests(model, state_dict: Mapping[str, object] | None = None) -> tuple[bytes, bytes]:
    """(stream digest, weights digest) of ``model`` (or of ``state_dict`` stored for it): the first keys
    its bitstreams (:class:`~stylecodec.bitstream.ModelKey`), the second covers every weight."""
    sd = model.state_dict() if state_dict is None else state_dict
    skip = stream_skip(model)
    stream = model_digest(sd, skip)
    left_out = skip and any(name.startswith(skip) for name in sd)
    return stream, model_digest(sd) if left_out else stream       # nothing left out: the same bytes, hashed once


def weights_id(stream_digest: bytes, weights_digest: bytes) -> str:
    """Names the weights that make a model's pixels: ``0x<fingerprint>`` when the stream key covers them
    all, else ``0x<fingerprint>-<first 8 hex digits of the weights digest>`` (e.g. another refiner)."""
    fp = f"0x{int.from_bytes(stream_digest[:2], 'big'):04x}"
    return fp if stream_digest == weights_digest else f"{fp}-{weights_digest[:4].hex()}"


def fingerprint(state_dict: Mapping[str, object], skip: tuple[str, ...] = ()) -> int:
    """16-bit model fingerprint: the first two bytes (big-endian) of :func:`model_digest`."""
    return int.from_bytes(model_digest(state_dict, skip)[:2], "big")
