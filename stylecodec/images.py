"""Reading face images: any input -> RGB, the centre-square crop, and the training layout.

One rule for every reader: the codec's default ``align`` (:func:`centre_square`), the training
data (:func:`load_rgb`), the teacher labels and the evaluation all crop and resize the same way
(the centred square, Lanczos-resized to R x R).
"""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from .errors import StylecodecError

__all__ = ["ImageReadError", "load_image", "centre_square", "load_rgb"]


class ImageReadError(StylecodecError):
    """An input image cannot be read or has an unsupported shape or type."""


def load_image(image) -> Image.Image:
    """PIL image, uint8 array [H, W], [H, W, 3] or [H, W, 4], or a file path -> RGB PIL image."""
    try:
        if isinstance(image, Image.Image):
            img = image
        elif isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
                raise ImageReadError(f"an image array must be uint8 [H, W(, 3|4)], got {image.dtype} {image.shape}")
            img = Image.fromarray(image)
        elif isinstance(image, (str, os.PathLike)):
            img = Image.open(os.fspath(image))
        else:
            raise ImageReadError(f"cannot read an image from {type(image).__name__}")
        img.load()
        if min(img.size) < 1:
            raise ImageReadError("empty image")
        return img.convert("RGB")
    except ImageReadError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise ImageReadError(f"cannot read image {image if isinstance(image, (str, os.PathLike)) else ''}: "
                             f"{type(e).__name__}: {e}".replace(":  ", ": ")) from None


def centre_square(img: Image.Image, size: int) -> Image.Image:
    """The centred square crop of ``img``, resized (Lanczos) to size x size: the codec's default
    ``align`` and the layout of the training data."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((size, size), Image.LANCZOS)


def load_rgb(path_or_bytes: str | os.PathLike | bytes, resolution: int | None) -> np.ndarray:
    """An image file (or its bytes) as the codec trains on it: uint8 [R, R, 3], the
    :func:`centre_square` at ``resolution`` (None: the square at its own size)."""
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    with Image.open(src) as im:
        im = im.convert("RGB")
        return np.array(centre_square(im, resolution or min(im.size)), dtype=np.uint8)
