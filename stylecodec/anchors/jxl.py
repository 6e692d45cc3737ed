"""JPEG XL anchor: libjxl in the bundled FFmpeg (Pillow has no JPEG XL codec), distance sweep.

Command (256x256 example, distance 4)::

    ffmpeg -f rawvideo -pix_fmt rgb24 -s 256x256 -r 1 -i input.rgb -frames:v 1
           -c:v libjxl -distance 4 -effort 7 -f image2pipe out.jxl

JPEG XL codes RGB itself (XYB internally), so it gets the RGB image, not our YUV 4:2:0.
The output is a bare codestream (``FF 0A``, no ISO-BMFF box), so the file is the payload.
Distance 0 is lossless; FFmpeg caps the distance at 15, which limits how low the rate goes
(about 2 kB for a 256x256 face).
"""
from __future__ import annotations

import numpy as np

from .base import Anchor, AnchorError, EncodedImage, check_image, read_output, run_ffmpeg, workdir

__all__ = ["JxlAnchor"]


class JxlAnchor(Anchor):
    """JPEG XL through libjxl (VarDCT, effort 7 by default)."""

    name = "jxl"
    ffmpeg_encoder, ffmpeg_decoder = "libjxl", "libjxl"
    quality_name = "distance"
    q_range = (0.0, 15.0)
    sweep_values = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0)

    def __init__(self, effort: int = 7, timeout_s: float | None = None):
        self.effort = effort
        if timeout_s is not None:
            self.timeout_s = timeout_s

    def encoder_args(self, q: float) -> list[str]:
        """The FFmpeg output options for distance ``q`` (after the raw input options)."""
        return ["-c:v", "libjxl", "-distance", f"{float(q):g}", "-effort", str(self.effort)]

    def encode(self, img: np.ndarray, q: float) -> EncodedImage:
        img = check_image(img)
        self.check_q(q)
        h, w = img.shape[:2]
        with workdir() as d:
            src, out = d / "input.rgb", d / "out.jxl"
            src.write_bytes(img.tobytes())
            run_ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "1", "-i", str(src),
                        "-frames:v", "1", *self.encoder_args(q), "-f", "image2pipe", str(out)], timeout=self.timeout_s)
            data = read_output(out, f"{self.name} encoder")
        return EncodedImage(data=data, payload_bytes=len(data), anchor=self.name, q=float(q), shape=(h, w))

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        h, w = int(shape[0]), int(shape[1])
        with workdir() as d:
            src, out = d / "in.jxl", d / "decoded.rgb"
            src.write_bytes(data)
            run_ffmpeg(["-f", "jpegxl_pipe", "-c:v", "libjxl", "-i", str(src), "-frames:v", "1",
                        "-f", "rawvideo", "-pix_fmt", "rgb24", str(out)], timeout=self.timeout_s)
            raw = read_output(out, f"{self.name} decoder")
        if len(raw) != h * w * 3:
            raise AnchorError(f"{self.name}: decoded {len(raw)} bytes, expected {h * w * 3} for {w}x{h} RGB")
        return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3).copy()
