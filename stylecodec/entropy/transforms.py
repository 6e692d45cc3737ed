"""Per-layer analysis / synthesis transforms between W+ slices and the small coded latents y_l.

analysis  g_l: w[:, layer] [N, k, w_dim] --(minus w_avg)--> y_l [N, d_l]
synthesis h_l: y_l [N, d_l] --> w[:, layer] [N, k, w_dim] = w_avg + residual

Shape of both MLPs: a per-index linear (each of the k W+ indices its own w_dim <-> proj_dim
matrix), then an MLP over the k*proj_dim flattened projections. All units are W-space units
of the generator; y_l is unitless (the codec applies its gains and quantises it).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence, Union

import torch
from torch import nn

from ..layers import LAYER_NAMES, LayerSplit

__all__ = ["PerIndexLinear", "LayerAnalysis", "LayerSynthesis", "LayerTransforms", "DEFAULT_LATENT_DIMS"]

DEFAULT_LATENT_DIMS: dict[str, int] = {"basic": 16, "middle": 24, "enhanced": 32}
LatentDims = Union[Mapping[str, int], Sequence[int]]  # {"basic": 16, ...} or (16, 24, 32)


class PerIndexLinear(nn.Module):
    """[N, k, in_features] -> [N, k, out_features] with a separate matrix and bias per index."""

    def __init__(self,
        k:            int,  # Number of W+ indices (independent matrices).
        in_features:  int,  # Input features per index.
        out_features: int,  # Output features per index.
    ):
        super().__init__()
        self.k, self.in_features, self.out_features = k, in_features, out_features
        self.weight = nn.Parameter(torch.randn(k, in_features, out_features) / math.sqrt(in_features))
        self.bias = nn.Parameter(torch.zeros(k, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (self.k, self.in_features), \
            f"expected [N, {self.k}, {self.in_features}], got {tuple(x.shape)}"
        return torch.einsum("nki,kio->nko", x, self.weight) + self.bias


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class LayerAnalysis(nn.Module):
    """W+ slice [N, k, w_dim] -> y [N, latent_dim]."""

    def __init__(self,
        n_ws:       int,        # k: W+ indices in this layer.
        w_dim:      int = 512,  # Dimension of each w.
        latent_dim: int = 16,   # d_l: size of the coded latent y_l.
        proj_dim:   int = 64,   # Per-index projection size.
        hidden:     int = 256,  # Hidden width of the mixing MLP.
    ):
        super().__init__()
        self.n_ws, self.w_dim, self.latent_dim = n_ws, w_dim, latent_dim
        self.proj = PerIndexLinear(n_ws, w_dim, proj_dim)
        self.act = nn.LeakyReLU(0.2)
        self.mix = _mlp([n_ws * proj_dim, hidden, hidden, latent_dim])

    def forward(self, w: torch.Tensor, w_avg: torch.Tensor | None = None) -> torch.Tensor:
        assert w.shape[1:] == (self.n_ws, self.w_dim), f"expected [N, {self.n_ws}, {self.w_dim}], got {tuple(w.shape)}"
        if w_avg is not None:
            w = w - w_avg
        y = self.mix(self.act(self.proj(w)).flatten(1))
        assert y.shape == (w.shape[0], self.latent_dim)
        return y


class LayerSynthesis(nn.Module):
    """y [N, latent_dim] -> W+ slice [N, k, w_dim] = w_avg + residual(y)."""

    def __init__(self,
        latent_dim: int,        # d_l: size of the coded latent y_l.
        n_ws:       int,        # k: W+ indices in this layer.
        w_dim:      int = 512,  # Dimension of each w.
        proj_dim:   int = 64,   # Per-index projection size.
        hidden:     int = 256,  # Hidden width of the mixing MLP.
    ):
        super().__init__()
        self.n_ws, self.w_dim, self.latent_dim, self.proj_dim = n_ws, w_dim, latent_dim, proj_dim
        self.mix = _mlp([latent_dim, hidden, hidden, n_ws * proj_dim])
        self.act = nn.LeakyReLU(0.2)
        self.proj = PerIndexLinear(n_ws, proj_dim, w_dim)

    def forward(self, y: torch.Tensor, w_avg: torch.Tensor | None = None) -> torch.Tensor:
        assert y.shape[1:] == (self.latent_dim,), f"expected [N, {self.latent_dim}], got {tuple(y.shape)}"
        h = self.act(self.mix(y)).view(y.shape[0], self.n_ws, self.proj_dim)
        w = self.proj(h)
        if w_avg is not None:
            w = w + w_avg
        assert w.shape == (y.shape[0], self.n_ws, self.w_dim)
        return w


class LayerTransforms(nn.Module):
    """The analysis and synthesis transforms of all three layers, sharing one ``w_avg`` buffer.

    ``analyse(ws [N, num_ws, w_dim]) -> [y_basic, y_middle, y_enhanced]``;
    ``synthesise([y_basic, y_middle, y_enhanced]) -> ws [N, num_ws, w_dim]``.
    """

    def __init__(self,
        split:       LayerSplit,                # W+ index groups.
        latent_dims: LatentDims | None = None,  # d_l per layer, by name or in layer order; None = 16/24/32.
        w_dim:       int = 512,                 # Dimension of each w.
        proj_dim:    int = 64,                  # Per-index projection size.
        hidden:      int = 256,                 # Hidden width of the mixing MLPs.
    ):
        super().__init__()
        latent_dims = DEFAULT_LATENT_DIMS if latent_dims is None else latent_dims
        if isinstance(latent_dims, Mapping):
            dims = [int(latent_dims[name]) for name in LAYER_NAMES]
        else:
            dims = [int(d) for d in latent_dims]
        if len(dims) != len(LAYER_NAMES) or min(dims) < 1:
            raise ValueError(f"need one positive latent size per layer {LAYER_NAMES}, got {latent_dims!r}")
        self.split, self.w_dim, self.latent_dims = split, w_dim, dims
        self.analysis = nn.ModuleList(LayerAnalysis(split.size(name), w_dim, d, proj_dim, hidden)
                                      for name, d in zip(LAYER_NAMES, dims))
        self.synthesis = nn.ModuleList(LayerSynthesis(d, split.size(name), w_dim, proj_dim, hidden)
                                       for name, d in zip(LAYER_NAMES, dims))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    @torch.no_grad()
    def set_w_avg(self, w_avg: torch.Tensor) -> None:
        """Copy the generator's average w ([w_dim]) into the shared buffer."""
        if w_avg.shape != (self.w_dim,):
            raise ValueError(f"w_avg must have shape [{self.w_dim}], got {tuple(w_avg.shape)}")
        self.w_avg.copy_(w_avg.detach().to(self.w_avg))

    def analyse(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """ws [N, num_ws, w_dim] -> [y_l [N, d_l] for each layer]."""
        if ws.ndim != 3 or ws.shape[1:] != (self.split.num_ws, self.w_dim):
            raise ValueError(f"expected ws [N, {self.split.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        w_avg = self.w_avg.to(ws.dtype)
        return [g(ws[:, self.split.slice(name)], w_avg) for name, g in zip(LAYER_NAMES, self.analysis)]

    def synthesise(self, ys: Sequence[torch.Tensor]) -> torch.Tensor:
        """[y_l [N, d_l] for each layer] -> ws [N, num_ws, w_dim] (missing layers: fill y first, e.g. LSET)."""
        if len(ys) != len(LAYER_NAMES):
            raise ValueError(f"need {len(LAYER_NAMES)} latents (predict missing layers first), got {len(ys)}")
        w_avg = self.w_avg.to(ys[0].dtype)
        return torch.cat([h(y, w_avg) for h, y in zip(self.synthesis, ys)], dim=1)
