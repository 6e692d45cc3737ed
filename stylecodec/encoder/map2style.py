"""map2style (pSp's GradualStyleBlock): a feature map -> one 512-d style vector w_i."""
from __future__ import annotations

import math

import torch
from torch.nn import functional
from torch import nn

__all__ = ["EqualLinear", "GradualStyleBlock"]


class EqualLinear(nn.Module):
    """Linear layer with StyleGAN's equalised learning rate: y = x @ (W * lr_mul/sqrt(in)).T + b*lr_mul."""

    def __init__(self,
        in_features:  int,          # Input features.
        out_features: int,          # Output features.
        bias_init:    float = 0.0,  # Initial bias value.
        lr_mul:       float = 1.0,  # Learning-rate multiplier.
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)


class GradualStyleBlock(nn.Module):
    """[N, in_channels, S, S] -> [N, out_dim]: log2(S) stride-2 3x3 convs + LeakyReLU to 1x1, then EqualLinear."""

    def __init__(self,
        in_channels: int,   # Channels of the input feature map.
        width:       int,   # Channels of the strided convs.
        out_dim:     int,   # Output size (w_dim).
        spatial:     int,   # Input height = width S (a power of two >= 2).
    ):
        super().__init__()
        if spatial < 2 or spatial & (spatial - 1):
            raise ValueError(f"map2style needs a power-of-two feature size >= 2, got {spatial}")
        self.in_channels, self.width, self.out_dim, self.spatial = in_channels, width, out_dim, spatial
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_channels if i == 0 else width, width, kernel_size=3, stride=2, padding=1),
                       nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (self.in_channels, self.spatial, self.spatial), \
            f"expected [N, {self.in_channels}, {self.spatial}, {self.spatial}], got {tuple(x.shape)}"
        x = self.convs(x)
        assert x.shape[1:] == (self.width, 1, 1)
        return self.linear(x.flatten(1))
