"""Three-level feature pyramid (top-down, as in pSp): deep features upsampled onto shallower ones."""
from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional
from torch import nn

__all__ = ["FPN"]


class FPN(nn.Module):
    """[c1, c2, c3] (shallow to deep, any channels) -> [p1, p2, p3], each ``width`` channels.

    p3 = lat3(c3); p2 = up(p3) + lat2(c2); p1 = up(p2) + lat1(c1), with 1x1 lateral convs and
    bilinear upsampling to the lateral's size. p_i keeps the spatial size of c_i.
    """

    def __init__(self,
        in_channels: Sequence[int],  # Channels of c1, c2, c3 (shallow to deep).
        width:       int,            # Common output width of p1, p2, p3.
    ):
        super().__init__()
        assert len(in_channels) == 3
        self.width = width
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, kernel_size=1) for c in in_channels)

    @staticmethod
    def _upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        return functional.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=False) + lateral

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        c1, c2, c3 = feats
        p3 = self.lateral[2](c3)
        p2 = self._upsample_add(p3, self.lateral[1](c2))
        p1 = self._upsample_add(p2, self.lateral[0](c1))
        for p, c in zip((p1, p2, p3), (c1, c2, c3)):
            assert p.shape == (c.shape[0], self.width, *c.shape[2:])
        return [p1, p2, p3]
