"""What ``stylecodec eval`` can be asked for: anchors, metric groups and LFW entries. A module of names
only (no torch), so the CLI builds ``eval`` / ``demo`` parsers without importing the harness."""
from __future__ import annotations

from typing import Sequence

from ..errors import StylecodecError

__all__ = ["ANCHOR_NAMES", "EXTERNAL_ANCHOR_NAMES", "DEFAULT_ANCHORS", "METRIC_GROUPS", "LFW_ENTRIES", "lfw_entries"]

# the registries of stylecodec.anchors (ANCHORS, EXTERNAL_ANCHORS), by name; tests check they agree
ANCHOR_NAMES = ("vvc", "hevc", "av1", "jxl", "jpeg", "linear")
EXTERNAL_ANCHOR_NAMES = ("vvencapp", "vtm")
# what a run compares with unless --anchors says otherwise: every built-in anchor, the linear prior
# (eigenfaces) included, so every report shows what the learned prior adds
DEFAULT_ANCHORS = ANCHOR_NAMES

# group name -> result columns it fills
METRIC_GROUPS = {
    "psnr": ["psnr"], "ms_ssim": ["ms_ssim"], "lpips_alex": ["lpips_alex"], "lpips_vgg": ["lpips_vgg"],
    "facenet": ["id_facenet"], "sface": ["id_sface"], "dlib_resnet": ["dist_dlib"],
    "dlib": ["nme_dlib", "face_ref", "face_dec"],
}

# the rows of lfw.json, in order; stylecodec-head: identity read from both images' basic layers (no pixels)
LFW_ENTRIES = ("original", "aligned", "stylecodec-basic", "stylecodec-head", "vvc")


def lfw_entries(names: Sequence[str] | None) -> tuple[str, ...]:
    """``names`` (None: all of :data:`LFW_ENTRIES`), checked: StylecodecError unless some of them."""
    wanted = tuple(LFW_ENTRIES if names is None else names)
    unknown = sorted(set(wanted) - set(LFW_ENTRIES))
    if unknown or not wanted:
        raise StylecodecError(f"LFW entries must be some of {', '.join(LFW_ENTRIES)}; got {', '.join(unknown) or 'none'}")
    return wanted
