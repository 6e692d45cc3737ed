"""Refiner: the learned, nonlinear part of the machine-first decoder (the linear part is eigenfaces).

    x_hat = x_lin + R(x_lin, style)        style = MLP([ŷ_basic, ŷ_middle, ŷ_enhanced])

``R`` is a small U-Net on the P x P eigenface reconstruction ``x_lin``; every block is modulated
by the style (FiLM: per-channel scale and shift), so identity and shape from the basic layer and
the coefficients of the other layers steer the residual. Its output layer starts at zero, so an
untrained refiner decodes exactly the linear prior: training can only start from eigenfaces.

Shapes: x_lin [N, 3, P, P] in [-1, 1]; ŷ_l [N, d_l] (whitened latents, received or predicted).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Refiner"]


class _FiLMBlock(nn.Module):
    """Two 3x3 convs with a style-modulated middle and a residual path: [N, c_in, H, W] -> [N, c_out, H, W]."""

    def __init__(self, c_in: int, c_out: int, style_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.film = nn.Linear(style_dim, 2 * c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        scale, shift = self.film(style)[:, :, None, None].chunk(2, 1)
        h = F.leaky_relu(self.conv2(h * (1 + scale) + shift), 0.2)
        return (h + self.skip(x)) / math.sqrt(2)


class Refiner(nn.Module):
    """See the module docstring."""

    def __init__(self,
        latent_dims:      Sequence[int],                 # d_l of every layer (the style reads all of them).
        pixel_resolution: int,                           # P: side of x_lin.
        widths:           Sequence[int] = (32, 64, 128, 192),  # channels at P, P/2, P/4, P/8.
        style_dim:        int = 256,                     # width of the modulation vector.
    ):
        super().__init__()
        self.latent_dims, self.pixel_resolution = [int(d) for d in latent_dims], int(pixel_resolution)
        if self.pixel_resolution % (1 << (len(widths) - 1)):
            raise ValueError(f"pixel_resolution {pixel_resolution} is not divisible by 2^{len(widths) - 1}")
        self.style = nn.Sequential(nn.Linear(sum(self.latent_dims), 512), nn.LeakyReLU(0.2),
                                   nn.Linear(512, style_dim), nn.LeakyReLU(0.2))
        self.inp = nn.Conv2d(3, widths[0], 3, padding=1)
        self.down = nn.ModuleList(_FiLMBlock(a, b, style_dim) for a, b in zip(widths[:-1], widths[1:]))
        self.mid = _FiLMBlock(widths[-1], widths[-1], style_dim)
        self.up = nn.ModuleList(_FiLMBlock(a + b, a, style_dim) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Conv2d(widths[0], 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_lin: torch.Tensor, y_hat: Sequence[torch.Tensor]) -> torch.Tensor:
        p = self.pixel_resolution
        assert x_lin.ndim == 4 and x_lin.shape[1:] == (3, p, p), tuple(x_lin.shape)
        style = self.style(torch.cat([y.to(x_lin.dtype) for y in y_hat], 1))
        h = self.inp(x_lin)
        skips = []
        for block in self.down:
            skips.append(h)
            h = block(F.avg_pool2d(h, 2), style)
        h = self.mid(h, style)
        for block, skip in zip(reversed(self.up), reversed(skips)):
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], 1), style)
        return x_lin + self.out(h)
