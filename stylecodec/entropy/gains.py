"""Quality gains: the per-quality scaling of the coding domain that every codec model shares.

A model with ``gain`` / ``inv_gain`` [Q, D] (parameters), ``num_qualities``, ``offsets`` (layer l is
columns ``offsets[l]:offsets[l+1]`` of D) and ``lset`` gets :class:`QualityGains`' methods. Gains are
used as ``|gain|`` floored at :data:`GAIN_MIN`, never as exp(log gain): exp is not bit-reproducible.
"""
from __future__ import annotations

import torch

from .coder import GroupCoder

__all__ = ["GAIN_MIN", "QualityGains"]

GAIN_MIN = 1e-4


class QualityGains:
    """Mixin: (g, g_inv) per quality, layer columns, the group coder on the model's LSET."""

    def gains(self, quality, n: int | None = None, dtype: torch.dtype | None = None):
        """(g, g_inv), each [N, D] (D = sum d_l), positive; quality: int or int64 [N]."""
        q = torch.as_tensor(quality, device=self.gain.device, dtype=torch.long)
        if q.ndim == 0:
            q = q.expand(1 if n is None else n)
        if int(q.min()) < 0 or int(q.max()) >= self.num_qualities:
            raise ValueError(f"quality must be in 0..{self.num_qualities - 1}, got {q.tolist()}")
        g, gi = self.gain[q].abs().clamp_min(GAIN_MIN), self.inv_gain[q].abs().clamp_min(GAIN_MIN)
        return (g, gi) if dtype is None else (g.to(dtype), gi.to(dtype))

    def layer_slice(self, layer: int) -> slice:
        """Columns of layer ``layer`` in a [.., D] vector."""
        return slice(self.offsets[layer], self.offsets[layer + 1])

    @property
    def coder(self) -> GroupCoder:
        """The group coder on this model's LSET (training: float32, differentiable)."""
        return GroupCoder(self.lset)
