"""DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", 2020).

Applied with fresh randomness to every batch of real AND fake images before D, so D never
sees un-augmented images and the generator still gets gradients through the augmentation.
It lets a GAN train on ~10-30k images (UTKFace: ~23k) without D memorising the set.
Input and output: ``[N, C, H, W]`` in ``[-1, 1]`` (any float dtype); every op is differentiable.
"""
from __future__ import annotations

import torch
from torch.nn import functional

__all__ = ["DEFAULT_POLICY", "diff_augment"]

DEFAULT_POLICY = "color,translation,cutout"


def _rand(x: torch.Tensor) -> torch.Tensor:
    """One uniform [0, 1) number per sample, shaped ``[N, 1, 1, 1]``."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (_rand(x) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_rand(x) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each sample by up to ``ratio`` of its size (integer pixels), zero-filling the border."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gy = (gy + ty + 1).clamp(0, h + 1)
    gx = (gx + tx + 1).clamp(0, w + 1)
    pad = functional.pad(x, [1, 1, 1, 1])
    return pad.permute(0, 2, 3, 1)[gb, gy, gx].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` x size per sample, centred anywhere in the image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gy = (gy + oy - ch // 2).clamp(0, h - 1)
    gx = (gx + ox - cw // 2).clamp(0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gy, gx] = 0
    return x * mask.unsqueeze(1)


OPS = {"color": (brightness, saturation, contrast), "translation": (translation,), "cutout": (cutout,)}


def diff_augment(x: torch.Tensor, policy: str = DEFAULT_POLICY) -> torch.Tensor:
    """Apply the comma-separated ``policy`` (subset of color,translation,cutout); '' is the identity."""
    for name in filter(None, (p.strip() for p in policy.split(","))):
        if name not in OPS:
            raise ValueError(f"unknown DiffAugment op {name!r}; choose from {', '.join(OPS)}")
        for op in OPS[name]:
            x = op(x)
    return x.contiguous()
