"""HEVC (H.265) anchor: libx265 in the bundled FFmpeg, one intra picture at a fixed QP.

Command (256x256 example, QP 37)::

    ffmpeg -f rawvideo -pix_fmt yuv420p -s 256x256 -r 1 -i input.yuv -frames:v 1
           -c:v libx265 -preset slower -tune psnr -qp 37
           -x265-params keyint=1:ipratio=1:info=0:aud=0:hrd=0:repeat-headers=0:hash=0:wpp=0:log-level=info
           -f hevc out.265

Decoded with FFmpeg's native HEVC decoder. ``ipratio=1``: in constant-QP mode x265
otherwise codes I pictures 3 QP below ``-qp`` (the same trap as vvenc's IntraQPOffset);
the average QP x265 reports is checked. ``-tune psnr`` switches psycho-visual RD off,
as ``qpa=0`` does for VVC. ``info=0`` drops the version SEI, ``wpp=0`` the entry points.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import AnchorError, YuvAnchor, read_output, run_ffmpeg
from .nal import parse_annexb

__all__ = ["HevcAnchor"]

_AVG_QP = re.compile(rb"frame I:\s*\d+, Avg QP:\s*([\d.]+)")


class HevcAnchor(YuvAnchor):
    """HEVC through libx265 (preset slower, tune psnr, all-intra, no SEI/AUD/HRD)."""

    name = "hevc"
    ffmpeg_encoder, ffmpeg_decoder = "libx265", "hevc"
    quality_name = "qp"
    q_range = (0, 51)
    sweep_values = tuple(range(12, 52))

    def __init__(self, preset: str = "slower", full_range: bool = True, timeout_s: float | None = None):
        self.preset = preset
        self.full_range = full_range
        if timeout_s is not None:
            self.timeout_s = timeout_s

    def check_q(self, q: float) -> None:
        super().check_q(q)
        if int(q) != q:
            raise AnchorError(f"{self.name}: qp must be an integer, not {q}")

    def encoder_args(self, q: float) -> list[str]:
        """The FFmpeg output options for QP ``q`` (after the raw input options)."""
        params = "keyint=1:ipratio=1:info=0:aud=0:hrd=0:repeat-headers=0:hash=0:wpp=0:log-level=info"
        return ["-c:v", "libx265", "-preset", self.preset, "-tune", "psnr", "-qp", str(int(q)),
                "-x265-params", params]

    def _encode_yuv(self, src: Path, width: int, height: int, q: float, tmp: Path) -> tuple[bytes, dict]:
        out = tmp / "out.265"
        r = run_ffmpeg([*self._ffmpeg_raw_input(src, width, height), *self.encoder_args(q), "-f", "hevc", str(out)],
                       timeout=self.timeout_s, loglevel="info")
        meta = {}
        m = _AVG_QP.search(r.stderr + r.stdout)
        if m is not None:
            used = float(m.group(1))
            if abs(used - int(q)) > 1e-6:
                raise AnchorError(f"{self.name}: asked for QP {int(q)} but x265 reports average QP {used}")
            meta["qp_used"] = used
        return read_output(out, f"{self.name} encoder"), meta

    def _payload(self, data: bytes) -> tuple[int, dict]:
        layout = parse_annexb(data, "hevc")
        if not layout.slice_bytes:
            raise AnchorError(f"{self.name}: no slice NAL unit in the stream ({layout.summary()})")
        return layout.payload_bytes, {"slice_bytes": layout.slice_bytes,
                                      "parameter_set_bytes": layout.parameter_set_bytes,
                                      "nal_units": layout.types()}

    def _decode_yuv(self, data: bytes, tmp: Path) -> bytes:
        return self._ffmpeg_decode(data, tmp, "hevc", "hevc", ".265")
