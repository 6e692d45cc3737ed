"""TensorBoard logs of a run (``RUN_DIR/tb``): RD curves as scalars, the headline as text, the
image grids as images. TensorBoard scalars need integer steps: the step of a point is its
rate in units of 1e-4 bpp (step 123 = 0.0123 bpp), so each curve reads left to right by rate."""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from .harness import thumb_path
from .html import grid_cells
from .tables import METRICS, curves

__all__ = ["write_tensorboard"]


def write_tensorboard(run_dir: str | os.PathLike, table: list[dict], rows: list[dict], head: list[dict],
                      headline_md: str, max_images: int = 8) -> Path:
    """Rewrite ``run_dir/tb`` (old event files are removed first); returns the folder."""
    tb = Path(run_dir) / "tb"
    if tb.is_dir():
        shutil.rmtree(tb)
    w = SummaryWriter(log_dir=os.fspath(tb))
    try:
        for codec, pts in curves(table).items():
            for e in pts:
                step = max(1, round(e["bpp"] * 1e4))
                for m, _, _ in [("bpp", "", True), *METRICS]:
                    if math.isfinite(e[m]):
                        w.add_scalar(f"{m}/{codec}", e[m], step)
        w.add_text("headline", headline_md)
        images = sorted({r["image"] for r in rows if thumb_path(run_dir, r["image"]).is_file()})[:max_images]
        for image in images:
            tiles = []
            for row, _ in grid_cells(rows, image, head):
                p = thumb_path(run_dir, image) if row is None else thumb_path(run_dir, image, row["codec"], row["setting"])
                if p.is_file():
                    tiles.append(np.asarray(Image.open(p).convert("RGB")))
            if tiles:
                h = min(t.shape[0] for t in tiles)
                grid = np.concatenate([t[:h] for t in tiles], axis=1)
                w.add_image(f"grid/{image}", grid, 0, dataformats="HWC")
    finally:
        w.close()
    return tb
