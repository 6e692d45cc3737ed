"""The demo's sample faces: ``samples/`` of the repository when it holds images, else faces
rendered by the model's own generator (``experiments/make_samples.py`` writes those into
``samples/``). Rendered faces come from G's mapping network with truncation psi = 0.7,
fixed seeds and constant noise; they lie in the prior's range, so they flatter the codec
compared with photographs -- the report says which kind was used."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..batch import IMAGE_EXTS
from .common import write_png

__all__ = ["repo_samples_dir", "find_samples", "generate_samples"]


def repo_samples_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "samples"


def find_samples(folder: str | os.PathLike | None = None) -> list[Path]:
    """Image files directly in ``folder`` (default: the repository's samples/), sorted; [] if none."""
    folder = Path(folder) if folder is not None else repo_samples_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


@torch.no_grad()
def generate_samples(model, out_dir: str | os.PathLike, n: int = 5, seed: int = 0, psi: float = 0.7,
                     size: int | None = None) -> list[Path]:
    """Render ``n`` faces with ``model.G`` (a StyleCodecModel) and save ``sample_XX.png`` (``size``
    pixels a side, default the model's resolution) into ``out_dir``; returns the paths."""
    G = model.G
    device = next(G.parameters()).device
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        g = torch.Generator().manual_seed(seed + i)
        z = torch.randn(1, G.z_dim, generator=g).to(device)
        img = G(z, None, truncation_psi=psi, noise_mode="const")[0].float().clamp(-1, 1)
        arr = ((img + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        path = out_dir / f"sample_{seed + i:02d}.png"
        write_png(path, np.ascontiguousarray(arr), size)
        paths.append(path)
    return paths
