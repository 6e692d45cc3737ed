"""JPEG anchor through Pillow (libjpeg): baseline, optimised Huffman tables, 4:2:0 chroma.

Equivalent call: ``Image.save(buf, "JPEG", quality=q, optimize=True, subsampling=2)``,
quality 1..95 (higher is better; above 95 Pillow's tables stop paying off). Pillow uses the
JFIF convention, the same BT.601 full-range matrix as the video anchors. The whole file
(with its 18-byte JFIF header) is the payload.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .base import Anchor, AnchorError, EncodedImage, check_image

__all__ = ["JpegAnchor"]


class JpegAnchor(Anchor):
    """JPEG (Pillow), quality sweep 95 -> 1."""

    name = "jpeg"
    quality_name = "quality"
    q_range = (1, 95)
    higher_is_better = True
    sweep_values = (95, 90, 85, 80, 70, 60, 50, 40, 30, 20, 15, 10, 5, 3, 1)

    def encode(self, img: np.ndarray, q: float) -> EncodedImage:
        img = check_image(img)
        self.check_q(q)
        buf = io.BytesIO()
        try:
            Image.fromarray(img).save(buf, "JPEG", quality=int(q), optimize=True, subsampling=2)
        except OSError as e:
            raise AnchorError(f"{self.name}: Pillow could not write JPEG: {e}") from e
        data = buf.getvalue()
        return EncodedImage(data=data, payload_bytes=len(data), anchor=self.name, q=int(q), shape=img.shape[:2])

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as im:
                rgb = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise AnchorError(f"{self.name}: Pillow could not read JPEG: {e}") from e
        if rgb.shape[:2] != tuple(shape):
            raise AnchorError(f"{self.name}: decoded {rgb.shape[:2]}, expected {tuple(shape)}")
        return np.ascontiguousarray(rgb)
