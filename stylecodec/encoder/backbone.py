"""timm CNN backbone returning three feature levels (shallow, middle, deep) of an image.

Weights: ``pretrained=False`` always (no ImageNet weights can be fetched offline here), so
the backbone trains from scratch with the encoder; a user may pass a local timm/torchvision
state-dict file as ``checkpoint`` to start from ImageNet weights.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import timm
import torch
from torch import nn

__all__ = ["Backbone"]


class Backbone(nn.Module):
    """x [N, 3, H, W] in [-1, 1] -> [c1, c2, c3], c_i [N, channels[i], H/reductions[i], W/...].

    Inputs are mapped to [0, 1] and normalised with the model's ImageNet mean/std, so a
    local ImageNet checkpoint sees what it was trained on. Levels are ordered shallow to deep.
    """

    def __init__(self,
        name:           str = "resnet34",             # timm model name (any model supporting features_only).
        feature_levels: Sequence[int] = (1, 2, 3),    # timm out_indices, shallow to deep (resnet 1,2,3: stride 4,8,16).
        checkpoint:     str | Path | None = None,     # Local state-dict file to initialise from; None = random init.
    ):
        super().__init__()
        feature_levels = tuple(int(i) for i in feature_levels)
        if len(feature_levels) != 3 or list(feature_levels) != sorted(set(feature_levels)):
            raise ValueError(f"feature_levels must be 3 increasing timm out_indices, got {feature_levels}")
        kwargs = dict(features_only=True, out_indices=feature_levels)
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise FileNotFoundError(f"backbone checkpoint {path} does not exist")
            self.body = timm.create_model(name, pretrained=True,
                                          pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
        else:
            self.body = timm.create_model(name, pretrained=False, **kwargs)
        self.name = name
        self.feature_levels = feature_levels
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())
        cfg = getattr(self.body, "pretrained_cfg", None) or {}
        mean = cfg.get("mean", (0.485, 0.456, 0.406))
        std = cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        assert x.ndim == 4 and x.shape[1] == 3, f"expected [N, 3, H, W], got {tuple(x.shape)}"
        x = ((x + 1) * 0.5 - self.mean) / self.std
        feats = self.body(x)
        assert len(feats) == 3
        for f, c, r in zip(feats, self.channels, self.reductions):
            assert f.shape[1:] == (c, x.shape[2] // r, x.shape[3] // r), \
                f"feature {tuple(f.shape)} does not match channels {c}, reduction {r}"
        return list(feats)
