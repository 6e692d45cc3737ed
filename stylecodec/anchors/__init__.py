"""Reference codecs the face codec is compared with (DESIGN.md section 3).

Every anchor codes an H x W x 3 uint8 RGB image: ``encode(img, q) -> EncodedImage`` and
``decode(data, (H, W)) -> img``. All run through the FFmpeg bundled with
``imageio-ffmpeg`` except JPEG (Pillow):

=========  ==================  ==========  ======================================
name       codec               quality     notes
=========  ==================  ==========  ======================================
vvc        libvvenc (H.266)    qp 0..63    preset slower, qpa=0, IntraQPOffset=0
hevc       libx265 (H.265)     qp 0..51    preset slower, tune psnr, ipratio=1
av1        libaom-av1          crf 0..63   allintra, still picture, cpu-used 1
jxl        libjxl              distance    0 (lossless) .. 15
jpeg       Pillow              quality     1..95 (higher is better)
linear     eigenfaces + ours   point       0..6 (higher is better): PCA of training faces,
                                           coded with stylecodec.entropy (:mod:`.linear`)
vvencapp   vvencFFapp (ext.)   qp 0..63    when installed; same settings as vvc
vtm        VTM EncoderApp      qp 0..63    when installed; pass cfg=encoder_intra_vtm.cfg
=========  ==================  ==========  ======================================

:func:`downscaled` wraps an anchor as "downscale -> code -> upscale", the only way for VVC
to go below its floor: at QP 63 about 100 bytes for a 256x256 face (97-112 B measured on
UTKFace, 0.012-0.014 bpp) and 80-85 B at 128x128; SPS + PPS + start codes take about
59 B of that. :func:`sweep` codes one image at every quality of an anchor's sweep.

Owns: the anchor codecs (one module each), the NAL parsing of their streams (:mod:`.nal`).
May import: ``stylecodec.errors``, numpy, Pillow and imageio-ffmpeg; the linear-prior anchor
(:mod:`.linear`) also ``entropy.gaussian`` (the project's coder), ``data`` (the training faces),
``paths``, ``files``, ``bitstream`` (its error type), torch and scipy, inside its functions (so
importing the anchors stays light); nothing else of the package.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
from PIL import Image

from .av1 import Av1Anchor
from .base import Anchor, AnchorError, EncodedImage, check_image
from .hevc import HevcAnchor
from .jpeg import JpegAnchor
from .jxl import JxlAnchor
from .linear import LinearAnchor
from .vvc import VtmAnchor, VvcAnchor, VvencAppAnchor

__all__ = ["ANCHORS", "EXTERNAL_ANCHORS", "Anchor", "AnchorError", "EncodedImage", "DownscaledAnchor",
           "get_anchor", "available_anchors", "downscaled", "sweep"]

ANCHORS: dict[str, type[Anchor]] = {
    "vvc": VvcAnchor,
    "hevc": HevcAnchor,
    "av1": Av1Anchor,
    "jxl": JxlAnchor,
    "jpeg": JpegAnchor,
    "linear": LinearAnchor,
}

EXTERNAL_ANCHORS: dict[str, type[Anchor]] = {
    "vvencapp": VvencAppAnchor,
    "vtm": VtmAnchor,
}

_FILTERS = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
            "bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX}


def get_anchor(name: str, **kwargs) -> Anchor:
    """A new anchor by registry name; keyword arguments go to its constructor."""
    cls = ANCHORS.get(name) or EXTERNAL_ANCHORS.get(name)
    if cls is None:
        known = ", ".join([*ANCHORS, *EXTERNAL_ANCHORS])
        raise AnchorError(f"unknown anchor {name!r}; known: {known}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise AnchorError(f"anchor {name!r}: bad arguments {kwargs}: {e}") from e


def available_anchors(names: Iterable[str] | None = None) -> dict[str, str | None]:
    """name -> None when the anchor can run here, else the reason it cannot."""
    out: dict[str, str | None] = {}
    for name in names or [*ANCHORS, *EXTERNAL_ANCHORS]:
        try:
            get_anchor(name).check_available()
            out[name] = None
        except AnchorError as e:
            out[name] = str(e)
    return out


class DownscaledAnchor(Anchor):
    """``inner`` applied to the image shrunk by ``factor``: downscale -> code -> upscale.

    Downscaling uses Pillow's Lanczos filter (antialiased, sharp); upscaling uses
    bicubic, which rings less than Lanczos on blocky decoded pictures. The coded size is
    ``round(H / factor) x round(W / factor)``; rates stay per pixel of the full image.
    """

    def __init__(self, inner: Anchor, factor: float, down: str = "lanczos", up: str = "bicubic"):
        if not factor > 1:
            raise AnchorError(f"downscale factor must be > 1, not {factor}")
        if down not in _FILTERS or up not in _FILTERS:
            raise AnchorError(f"resampling filters are {', '.join(_FILTERS)}; got {down!r}, {up!r}")
        self.inner, self.factor, self.down, self.up = inner, float(factor), down, up
        self.name = f"{inner.name}_down{self.factor:g}"
        self.quality_name, self.q_range = inner.quality_name, inner.q_range
        self.higher_is_better, self.sweep_values = inner.higher_is_better, inner.sweep_values
        self.timeout_s, self.optional = inner.timeout_s, inner.optional

    def coded_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return max(2, round(shape[0] / self.factor)), max(2, round(shape[1] / self.factor))

    def check_available(self) -> None:
        self.inner.check_available()

    def prepare(self) -> None:
        self.inner.prepare()

    def encode(self, img: np.ndarray, q: float) -> EncodedImage:
        img = check_image(img)
        h, w = img.shape[:2]
        ch, cw = self.coded_shape((h, w))
        small = np.asarray(Image.fromarray(img).resize((cw, ch), _FILTERS[self.down]))
        enc = self.inner.encode(small, q)
        return EncodedImage(data=enc.data, payload_bytes=enc.payload_bytes, anchor=self.name, q=enc.q, shape=(h, w),
                            meta={**enc.meta, "coded_shape": (ch, cw)})

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        h, w = int(shape[0]), int(shape[1])
        ch, cw = self.coded_shape((h, w))
        small = self.inner.decode(data, (ch, cw))
        return np.asarray(Image.fromarray(small).resize((w, h), _FILTERS[self.up])).copy()


def downscaled(anchor: Anchor | str, factor: float, down: str = "lanczos", up: str = "bicubic") -> DownscaledAnchor:
    """``anchor`` (or its registry name) as "downscale by ``factor`` -> code -> upscale"."""
    inner = get_anchor(anchor) if isinstance(anchor, str) else anchor
    return DownscaledAnchor(inner, factor, down, up)


def sweep(anchor: Anchor | str, img: np.ndarray, qs: Iterable[float] | None = None) -> list[tuple[float, int, int]]:
    """``[(q, bytes, payload_bytes), ...]`` over ``qs`` (default: the anchor's sweep, best quality first)."""
    a = get_anchor(anchor) if isinstance(anchor, str) else anchor
    out = []
    for q in (a.sweep_values if qs is None else qs):
        enc = a.encode(img, q)
        out.append((q, enc.nbytes, enc.payload_bytes))
    return out
