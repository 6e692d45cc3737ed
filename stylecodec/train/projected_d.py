"""Projected discriminator for the refiner (Projected GAN, Sauer et al. 2021, reduced for a CPU).

    D(x) = [D_i(P_i(F_i(x))) for i in 4 scales]       F: frozen EfficientNet-Lite0 (assets.efficientnet_lite)

``P_i`` is a fixed random 1x1 projection of scale i's features to ``proj`` channels (Projected GAN's
cross-channel mixing; buffers, so a checkpoint restores them exactly; no cross-scale mixing), ``D_i`` a
small spectrally normalised conv net giving a map of real/fake logits. Hinge loss: :func:`d_loss` for D,
:func:`g_loss` for the refiner. Input: faces [N, 3, P, P] in [-1, 1], P a multiple of 32.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..assets.efficientnet_lite import FEATURE_CHANNELS, LiteFeatures

__all__ = ["ProjectedDiscriminator", "d_loss", "g_loss"]


def _head(channels: int, side: int) -> nn.Sequential:
    """Strided 4x4 convs down to a side of 4 (or the side, if smaller), then 1x1 to one logit per cell."""
    layers: list[nn.Module] = []
    while side > 4:
        layers += [spectral_norm(nn.Conv2d(channels, channels, 4, 2, 1)), nn.LeakyReLU(0.2)]
        side //= 2
    layers.append(spectral_norm(nn.Conv2d(channels, 1, 1)))
    return nn.Sequential(*layers)


class ProjectedDiscriminator(nn.Module):
    """See the module docstring. ``features``: the frozen trunk (built here when None; pass one to share it)."""

    def __init__(self,
        resolution: int,                       # P: side of the faces it judges (a multiple of 32)
        proj: int = 64,                        # channels of each random projection
        seed: int = 0,                         # seed of the random projections
        features: LiteFeatures | None = None,  # the frozen EfficientNet-Lite0 trunk
    ):
        super().__init__()
        if resolution % 32:
            raise ValueError(f"resolution {resolution} is not a multiple of 32")
        self.resolution = int(resolution)
        self._features = [features or LiteFeatures()]     # a list: not a submodule (frozen, not saved)
        g = torch.Generator().manual_seed(seed)
        for i, c in enumerate(FEATURE_CHANNELS):
            w = torch.randn(proj, c, 1, 1, generator=g) / math.sqrt(c)
            self.register_buffer(f"proj{i}", w)
        self.heads = nn.ModuleList(_head(proj, resolution // s) for s in (4, 8, 16, 32))

    def _apply(self, fn, *args, **kwargs):               # .to(device) moves the frozen trunk too
        self._features[0]._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [N, 3, P, P] in [-1, 1] -> logit maps [N, 1, h_i, w_i], one per scale."""
        assert x.ndim == 4 and x.shape[1:] == (3, self.resolution, self.resolution), tuple(x.shape)
        feats = self._features[0](x)
        return [head(F.conv2d(f, getattr(self, f"proj{i}").to(f.dtype)))
                for i, (f, head) in enumerate(zip(feats, self.heads))]


def d_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the discriminator, summed over scales."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake))


def g_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the generator (the refiner), summed over scales."""
    return sum(-f.mean() for f in fake)
