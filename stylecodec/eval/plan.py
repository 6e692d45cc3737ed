"""What an evaluation run will do and about how long it takes: printed in one line before it starts,
and the default number of LFW pairs (in proportion to the images asked for).

Time constants, measured on this project's 2-core CPU with the other core busy (one torch thread;
``stylecodec eval`` of 2 held-out faces with the default anchors: 102 rows in 195 s; LFW 40 pairs in
54 s, the demo's 100 pairs in 168 s): every row costs about 1.2 s of metrics (LPIPS x 2, facenet,
SFace, dlib, MS-SSIM) plus its codec's own time; LFW about 1.5 s per pair. A GPU or an idle machine
is faster; a figure off by 2x still tells minutes from hours.
"""
from __future__ import annotations

from ..batch import find_images, select_shard
from .settings import anchor_specs, parse_qualities

__all__ = ["default_lfw_pairs", "describe", "LFW_PAIRS_PER_IMAGE", "LFW_MIN_PAIRS", "LFW_ALL_PAIRS"]

LFW_PAIRS_PER_IMAGE = 20        # default LFW pairs per image asked for ...
LFW_MIN_PAIRS = 40              # ... at least 4 per fold ...
LFW_ALL_PAIRS = 6000            # ... at most the whole protocol
METRICS_S_PER_ROW = 1.2
CODEC_S_PER_ROW = {"stylecodec": 0.2, "vvc": 1.4, "vvencapp": 1.4, "vtm": 60.0, "hevc": 0.1, "av1": 0.25,
                   "jxl": 0.1, "jpeg": 0.0, "linear": 0.02}     # linear: + its one-time PCA fit (2-5 min, cached)
LFW_S_PER_PAIR = 1.5
START_S = 15.0                  # imports, model, report


def default_lfw_pairs(n_images: int) -> int:
    """LFW pairs when ``--lfw-pairs`` is not given: 20 per image, at least 40, at most all 6,000."""
    return max(LFW_MIN_PAIRS, min(LFW_ALL_PAIRS, LFW_PAIRS_PER_IMAGE * n_images))


def describe(cfg, codec, lfw_pairs: int | None) -> str:
    """One line: images x rows per image (by codec), LFW pairs, and the expected time."""
    n = len(select_shard(find_images(cfg.images, cfg.val_count, cfg.limit), cfg.shard))
    rows: dict[str, int] = {}
    if codec is not None:
        q = len(parse_qualities(cfg.qualities, codec.quality_range)) + len(cfg.bpp_targets)
        rows["stylecodec"] = 3 * q
    for spec in anchor_specs(cfg.anchors, cfg.qps, cfg.downscale):
        rows[spec.name] = rows.get(spec.name, 0) + len(spec.qs)
    per_image = sum(rows.values())
    seconds = START_S + n * sum(k * (METRICS_S_PER_ROW + CODEC_S_PER_ROW.get(c, 1.0)) for c, k in rows.items())
    lfw = ""
    if lfw_pairs:
        seconds += lfw_pairs * LFW_S_PER_PAIR
        lfw = f" + LFW {lfw_pairs} pairs (original, aligned, stylecodec basic, VVC floor)"
    what = ", ".join(f"{c} {k}" for c, k in rows.items())
    return (f"plan: {n} images x {per_image} rows ({what}){lfw}; expected about {_duration(seconds)} "
            f"on a 2-core CPU (measured: 1.2 s of metrics per row, VVC 1.4 s, LFW 1.5 s per pair)")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
