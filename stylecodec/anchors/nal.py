"""Byte accounting of coded streams: Annex-B NAL units (VVC, HEVC) and AV1 OBUs.

A :class:`StreamLayout` lists the units of a stream and sums their bytes by kind:

* ``vcl`` - coded slice data (VVC types 0-11, HEVC 0-31; AV1 frame / tile-group OBUs)
* ``parameter_set`` - VPS / SPS / PPS / DCI / OPI (AV1: sequence header): fixed for a
  given codec configuration and picture size, so a sender and receiver can agree on
  them in advance
* ``aps`` - VVC adaptation parameter sets (ALF / LMCS / scaling-list data): computed
  from the picture, so they travel with it
* ``picture_header`` - a VVC picture header NAL unit (absent when it sits in the slice
  header), AV1 frame header OBUs
* ``aud``, ``sei``, ``end`` (end of sequence / bitstream), ``filler``, ``other``

Sizes of units count the NAL header and payload, not the start-code prefix (nor the
zero bytes before a start code); ``overhead_bytes`` holds those, so
``sum(unit sizes) + overhead_bytes == total_bytes``.

``slice_bytes`` is the VCL data alone. ``payload_bytes`` is what must still be sent per
image when the parameter sets are agreed in advance: VCL + APS + picture headers
(without start codes: one NAL unit needs no delimiter inside a container).
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["NalUnit", "StreamLayout", "split_annexb", "parse_annexb", "parse_obus", "VVC_TYPES", "HEVC_TYPES"]

VVC_TYPES: dict[int, str] = {
    0: "TRAIL", 1: "STSA", 2: "RADL", 3: "RASL", 4: "RSV_VCL_4", 5: "RSV_VCL_5", 6: "RSV_VCL_6",
    7: "IDR_W_RADL", 8: "IDR_N_LP", 9: "CRA", 10: "GDR", 11: "RSV_IRAP_11", 12: "OPI", 13: "DCI",
    14: "VPS", 15: "SPS", 16: "PPS", 17: "PREFIX_APS", 18: "SUFFIX_APS", 19: "PH", 20: "AUD",
    21: "EOS", 22: "EOB", 23: "PREFIX_SEI", 24: "SUFFIX_SEI", 25: "FD",
}
_VVC_KIND = {12: "parameter_set", 13: "parameter_set", 14: "parameter_set", 15: "parameter_set",
             16: "parameter_set", 17: "aps", 18: "aps", 19: "picture_header", 20: "aud", 21: "end",
             22: "end", 23: "sei", 24: "sei", 25: "filler"}

HEVC_TYPES: dict[int, str] = {
    0: "TRAIL_N", 1: "TRAIL_R", 2: "TSA_N", 3: "TSA_R", 4: "STSA_N", 5: "STSA_R", 6: "RADL_N",
    7: "RADL_R", 8: "RASL_N", 9: "RASL_R", 16: "BLA_W_LP", 17: "BLA_W_RADL", 18: "BLA_N_LP",
    19: "IDR_W_RADL", 20: "IDR_N_LP", 21: "CRA_NUT", 32: "VPS", 33: "SPS", 34: "PPS", 35: "AUD",
    36: "EOS", 37: "EOB", 38: "FD", 39: "PREFIX_SEI", 40: "SUFFIX_SEI",
}
_HEVC_KIND = {32: "parameter_set", 33: "parameter_set", 34: "parameter_set", 35: "aud", 36: "end",
              37: "end", 38: "filler", 39: "sei", 40: "sei"}

AV1_OBU_TYPES: dict[int, str] = {
    1: "SEQUENCE_HEADER", 2: "TEMPORAL_DELIMITER", 3: "FRAME_HEADER", 4: "TILE_GROUP", 5: "METADATA",
    6: "FRAME", 7: "REDUNDANT_FRAME_HEADER", 8: "TILE_LIST", 15: "PADDING",
}
_AV1_KIND = {1: "parameter_set", 2: "aud", 3: "picture_header", 4: "vcl", 5: "sei", 6: "vcl",
             7: "picture_header", 8: "vcl", 15: "filler"}

_PAYLOAD_KINDS = ("vcl", "aps", "picture_header")


@dataclass(frozen=True)
class NalUnit:
    """One NAL unit (or OBU): where it starts (its header), its size, type and kind."""

    offset: int
    size: int
    nal_type: int
    type_name: str
    kind: str


@dataclass
class StreamLayout:
    """The units of one stream and byte sums by kind (see the module doc)."""

    codec: str
    total_bytes: int
    units: list[NalUnit] = field(default_factory=list)

    def bytes_of(self, *kinds: str) -> int:
        return sum(u.size for u in self.units if u.kind in kinds)

    @property
    def slice_bytes(self) -> int:
        return self.bytes_of("vcl")

    @property
    def parameter_set_bytes(self) -> int:
        return self.bytes_of("parameter_set")

    @property
    def payload_bytes(self) -> int:
        return self.bytes_of(*_PAYLOAD_KINDS)

    @property
    def overhead_bytes(self) -> int:
        return self.total_bytes - sum(u.size for u in self.units)

    def types(self) -> list[str]:
        return [u.type_name for u in self.units]

    def summary(self) -> str:
        parts = ", ".join(f"{u.type_name}:{u.size}" for u in self.units)
        return (f"{self.codec} {self.total_bytes} B = [{parts}] + {self.overhead_bytes} start-code B; "
                f"slice {self.slice_bytes} B, payload {self.payload_bytes} B")


def split_annexb(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each NAL unit in an Annex-B byte stream.

    Start codes are ``00 00 01`` with any number of leading zero bytes; trailing zero
    bytes before the next start code are not part of the unit (a NAL unit never ends in
    ``00``). Bytes before the first start code are ignored (they must be zero).
    """
    starts: list[int] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    out = []
    for k, s in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        while end > s and data[end - 1] == 0:
            end -= 1
        if end > s:
            out.append((s, end - s))
    return out


def parse_annexb(data: bytes, codec: str = "vvc") -> StreamLayout:
    """Parse a VVC (H.266) or HEVC (H.265) Annex-B stream into a :class:`StreamLayout`."""
    if codec not in ("vvc", "hevc"):
        raise ValueError(f"codec must be 'vvc' or 'hevc', not {codec!r}")
    layout = StreamLayout(codec=codec, total_bytes=len(data))
    for off, size in split_annexb(data):
        if size < 2:
            raise ValueError(f"truncated {codec} NAL unit at byte {off}")
        if codec == "vvc":  # forbidden(1) reserved(1) layer_id(6) | type(5) temporal_id_plus1(3)
            t = data[off + 1] >> 3
            name, kind = VVC_TYPES.get(t, f"NUT_{t}"), ("vcl" if t <= 11 else _VVC_KIND.get(t, "other"))
        else:  # forbidden(1) type(6) layer_id(6) temporal_id_plus1(3)
            t = (data[off] >> 1) & 0x3F
            name, kind = HEVC_TYPES.get(t, f"NUT_{t}"), ("vcl" if t <= 31 else _HEVC_KIND.get(t, "other"))
        layout.units.append(NalUnit(off, size, t, name, kind))
    return layout


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos + i >= len(data):
            raise ValueError("truncated leb128 size in AV1 OBU")
        b = data[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, i + 1
    raise ValueError("leb128 longer than 8 bytes in AV1 OBU")


def parse_obus(data: bytes) -> StreamLayout:
    """Parse an AV1 low-overhead OBU stream (``ffmpeg -f obu``; every OBU has a size field).

    OBU sizes include their header, extension and size field, so there is no overhead.
    """
    layout = StreamLayout(codec="av1", total_bytes=len(data))
    pos = 0
    while pos < len(data):
        header = data[pos]
        t, has_ext, has_size = (header >> 3) & 0xF, (header >> 2) & 1, (header >> 1) & 1
        if not has_size:
            raise ValueError(f"AV1 OBU at byte {pos} has no size field (not a low-overhead stream)")
        hdr = 1 + has_ext
        n, nlen = _leb128(data, pos + hdr)
        size = hdr + nlen + n
        if pos + size > len(data):
            raise ValueError(f"AV1 OBU at byte {pos} overruns the stream")
        layout.units.append(NalUnit(pos, size, t, AV1_OBU_TYPES.get(t, f"OBU_{t}"), _AV1_KIND.get(t, "other")))
        pos += size
    return layout
