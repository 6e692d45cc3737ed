"""AV1 anchor: libaom-av1 in the bundled FFmpeg, a still picture at constant quality (CRF).

Command (256x256 example, CRF 40)::

    ffmpeg -f rawvideo -pix_fmt yuv420p -s 256x256 -r 1 -i input.yuv -frames:v 1
           -c:v libaom-av1 -usage allintra -still-picture 1 -cpu-used 1 -tune psnr
           -crf 40 -b:v 0 -f obu out.obu

``-f obu`` writes the raw low-overhead OBU stream (temporal delimiter, reduced
still-picture sequence header, one frame OBU), no container; decoded with libdav1d.
``payload_bytes`` is the frame OBU(s) alone (the sequence header is agreed in advance).
CRF 0..63 maps onto libaom's quantiser index 0..255 (CRF 63 is the coarsest).
"""
from __future__ import annotations

from pathlib import Path

from .base import AnchorError, YuvAnchor, read_output, run_ffmpeg
from .nal import parse_obus

__all__ = ["Av1Anchor"]


class Av1Anchor(YuvAnchor):
    """AV1 through libaom (all-intra usage, still picture, CRF sweep)."""

    name = "av1"
    ffmpeg_encoder, ffmpeg_decoder = "libaom-av1", "libdav1d"
    quality_name = "crf"
    q_range = (0, 63)
    sweep_values = tuple(range(10, 64))

    def __init__(self, cpu_used: int = 1, full_range: bool = True, timeout_s: float | None = None):
        self.cpu_used = cpu_used
        self.full_range = full_range
        if timeout_s is not None:
            self.timeout_s = timeout_s

    def check_q(self, q: float) -> None:
        super().check_q(q)
        if int(q) != q:
            raise AnchorError(f"{self.name}: crf must be an integer, not {q}")

    def encoder_args(self, q: float) -> list[str]:
        """The FFmpeg output options for CRF ``q`` (after the raw input options)."""
        return ["-c:v", "libaom-av1", "-usage", "allintra", "-still-picture", "1", "-cpu-used", str(self.cpu_used),
                "-tune", "psnr", "-crf", str(int(q)), "-b:v", "0"]

    def _encode_yuv(self, src: Path, width: int, height: int, q: float, tmp: Path) -> tuple[bytes, dict]:
        out = tmp / "out.obu"
        run_ffmpeg([*self._ffmpeg_raw_input(src, width, height), *self.encoder_args(q), "-f", "obu", str(out)],
                   timeout=self.timeout_s)
        return read_output(out, f"{self.name} encoder"), {}

    def _payload(self, data: bytes) -> tuple[int, dict]:
        try:
            layout = parse_obus(data)
        except ValueError as e:
            raise AnchorError(f"{self.name}: unreadable OBU stream: {e}") from e
        if not layout.slice_bytes:
            raise AnchorError(f"{self.name}: no frame OBU in the stream ({layout.summary()})")
        return layout.payload_bytes, {"frame_bytes": layout.slice_bytes,
                                      "sequence_header_bytes": layout.parameter_set_bytes,
                                      "obus": layout.types()}

    def _decode_yuv(self, data: bytes, tmp: Path) -> bytes:
        return self._ffmpeg_decode(data, tmp, "obu", "libdav1d", ".obu")
