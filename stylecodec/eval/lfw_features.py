"""LFW's face-network outputs (evaluation only, never training): every image of the pairs file,
aligned to the codec's layout (256²) through the shared alignment cache, then
:func:`stylecodec.analysis.face_teachers.face_teachers` (cached under the tag "lfw").

    python -m stylecodec.eval.lfw_features
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..analysis.face_teachers import RESOLUTION, face_teachers
from ..paths import cache_root, shared_dir
from .align_cache import AlignmentCache

__all__ = ["lfw_teachers", "lfw_names"]


def lfw_names(pairs_csv: str | Path | None = None) -> tuple[Path, list[str], list[dict]]:
    """(image folder, sorted image names of the pairs file, the pair rows)."""
    pairs_csv = Path(pairs_csv) if pairs_csv is not None else shared_dir() / "data" / "lfw_pairs.csv"
    with open(pairs_csv) as f:
        rows = list(csv.DictReader(f))
    return pairs_csv.parent / "lfw", sorted({r["image_a"] for r in rows} | {r["image_b"] for r in rows}), rows


def lfw_teachers(pairs_csv: str | Path | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Teacher outputs of every LFW image of the pairs file, aligned to the codec's layout (256²) through
    the shared alignment cache (``$STYLECODEC_CACHE/align``)."""
    root, names, _ = lfw_names(pairs_csv)
    cache = AlignmentCache(cache_root() / "align", RESOLUTION)

    def load(ns):
        out = [cache.aligned(np.asarray(Image.open(root / n).convert("RGB")))[0] for n in ns]
        cache.save()
        return np.stack(out)

    return face_teachers("lfw", names, load, progress=progress)



if __name__ == "__main__":
    torch.set_num_threads(1)
    out = lfw_teachers()
    print(f"lfw: {len(out['files'])} faces; SFace fallbacks {int(out['sface_fb'].sum())}, dlib found "
          f"{int(out['found'].sum())}")
