"""GradualStyleEncoder: image -> W+ (pSp; optionally e4e's base w + per-index offsets).

Which feature feeds which W+ index follows the :class:`~stylecodec.layers.LayerSplit`:
basic indices read the deepest pyramid level p3, middle indices p2, enhanced indices the
shallowest p1 (pSp's coarse / middle / fine).

Resolution: the encoder always works at ``input_resolution`` (default 256), independent of
the generator's resolution; images of any other square size are resized to it first
(bilinear, antialiased). So a 1024² generator (num_ws=18) is inverted from a 256² view, as
in pSp.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional
from torch import nn

from stylecodec.layers import LayerSplit
from stylecodec.encoder.backbone import Backbone
from stylecodec.encoder.fpn import FPN
from stylecodec.encoder.map2style import GradualStyleBlock

__all__ = ["GradualStyleEncoder"]

MODES = ("psp", "e4e")


class GradualStyleEncoder(nn.Module):
    """x [N, 3, H, H] in [-1, 1] -> ws [N, num_ws, w_dim] (W space units of the generator).

    mode='psp': ws[:, i] = head_i(features) (+ w_avg).
    mode='e4e': ws[:, 0] = head_0(p3) (+ w_avg); ws[:, i] = ws[:, 0] + offsets_scale * head_i(...)
    for i >= 1, so ``ws[:, i] - ws[:, :1]`` are the offsets (regularise them as e4e does).
    ``normalize_ws``: each w scaled to unit RMS before w_avg is added. An encoder trained jointly with
    a generator from scratch needs it: demodulated convs make images nearly invariant to the scale
    of w, so nothing else stops ws from growing to beat the fixed quantisation step (observed: RMS
    50 after 1,000 images, latent loss 2e4).
    """

    def __init__(self,
        num_ws:                int,                        # Number of W+ indices of the generator (2*log2(R_G) - 2).
        w_dim:                 int = 512,                  # Dimension of each w.
        backbone:              str = "resnet34",           # timm backbone name (trained from scratch).
        feature_levels:        tuple = (1, 2, 3),          # timm out_indices of the 3 pyramid levels (shallow to deep).
        fpn_width:             int = 128,                  # Channels of the pyramid levels p1, p2, p3.
        style_width:           int = 128,                  # Channels of the map2style strided convs.
        input_resolution:      int = 256,                  # Resolution the encoder works at; inputs are resized to it.
        split:                 LayerSplit | None = None,   # W+ index groups; None = LayerSplit.default(num_ws).
        mode:                  str = "psp",                # 'psp' (independent w_i) or 'e4e' (base w + offsets).
        offsets_scale:         float = 0.1,                # e4e: multiplier of each offset head's output.
        start_from_latent_avg: bool = True,                # Add the w_avg buffer to every predicted w (pSp).
        normalize_ws:          bool = False,               # Scale each predicted w to unit RMS (before w_avg).
        backbone_checkpoint:   str | Path | None = None,   # Optional local state-dict file for the backbone.
    ):
        super().__init__()
        split = LayerSplit.default(num_ws) if split is None else split
        if split.num_ws != num_ws:
            raise ValueError(f"split has num_ws={split.num_ws} but the encoder was given num_ws={num_ws}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if input_resolution < 8 or input_resolution & (input_resolution - 1):
            raise ValueError(f"input_resolution must be a power of two >= 8, got {input_resolution}")
        self.num_ws, self.w_dim, self.input_resolution = num_ws, w_dim, input_resolution
        self.split, self.mode, self.offsets_scale = split, mode, float(offsets_scale)
        self.start_from_latent_avg, self.normalize_ws = bool(start_from_latent_avg), bool(normalize_ws)
        self.config = dict(num_ws=num_ws, w_dim=w_dim, backbone=backbone, feature_levels=tuple(feature_levels),
                           fpn_width=fpn_width, style_width=style_width, input_resolution=input_resolution,
                           split=split.to_dict(), mode=mode, offsets_scale=float(offsets_scale),
                           start_from_latent_avg=bool(start_from_latent_avg), normalize_ws=bool(normalize_ws))

        self.backbone = Backbone(backbone, feature_levels, checkpoint=backbone_checkpoint)
        self.fpn = FPN(self.backbone.channels, fpn_width)
        sizes = [input_resolution // r for r in self.backbone.reductions]  # p1, p2, p3 spatial sizes
        # W+ index -> pyramid level: enhanced -> p1 (0), middle -> p2 (1), basic -> p3 (2).
        self.level_of = [{"enhanced": 0, "middle": 1, "basic": 2}[split.layer_of(i)] for i in range(num_ws)]
        self.styles = nn.ModuleList(
            GradualStyleBlock(fpn_width, style_width, w_dim, sizes[self.level_of[i]]) for i in range(num_ws))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    @torch.no_grad()
    def set_w_avg(self, w_avg: torch.Tensor) -> None:
        """Copy the generator's average w ([w_dim], e.g. ``G.mapping.w_avg``) into the buffer."""
        if w_avg.shape != (self.w_dim,):
            raise ValueError(f"w_avg must have shape [{self.w_dim}], got {tuple(w_avg.shape)}")
        self.w_avg.copy_(w_avg.detach().to(self.w_avg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
            raise ValueError(f"expected images [N, 3, H, H], got {tuple(x.shape)}")
        if x.shape[-1] != self.input_resolution:
            x = functional.interpolate(x, size=(self.input_resolution,) * 2, mode="bilinear",
                              align_corners=False, antialias=True)
        pyramid = self.fpn(self.backbone(x))
        if self.mode == "psp":
            ws = torch.stack([head(pyramid[lvl]) for head, lvl in zip(self.styles, self.level_of)], dim=1)
        else:
            base = self.styles[0](pyramid[self.level_of[0]])
            offsets = [torch.zeros_like(base)] + [self.offsets_scale * self.styles[i](pyramid[self.level_of[i]])
                                                  for i in range(1, self.num_ws)]
            ws = base.unsqueeze(1) + torch.stack(offsets, dim=1)
        if self.normalize_ws:
            ws = ws * (ws.square().mean(dim=2, keepdim=True) + 1e-8).rsqrt()
        if self.start_from_latent_avg:
            ws = ws + self.w_avg.to(ws.dtype)
        assert ws.shape == (x.shape[0], self.num_ws, self.w_dim)
        return ws
