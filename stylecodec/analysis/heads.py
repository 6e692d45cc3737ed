"""Machine analysis from the basic layer alone: 68 landmarks and an identity embedding, no pixels.

Input (``AnalysisHeads.inputs``):

- ``"basic"`` (default): ŷ_basic [N, d_basic], the decoded, dequantised basic-layer latent
  exactly as :meth:`stylecodec.codec.Codec.decode_y` returns it (``ŷ_c · inv_gain``, the
  synthesis input; unscaled domain).
- ``"basic+pred"``: ŷ_basic followed by the LSET's greedy means of the middle and enhanced
  layers predicted from it (what the decoder uses for missing layers) -- still a function of
  the basic layer only; more features, no more information.

Outputs: ``landmarks`` [N, 68, 2], (x, y) normalised to [0, 1] over the aligned R x R image
(pixel = u·R − 0.5; dlib 68-point iBUG order), and ``identity`` [N, 512] L2-normalised,
trained to match the facenet CASIA-WebFace teacher embedding of the original aligned face.

The heads are stored in the model checkpoint, tagged with the codec's fingerprint
(:mod:`stylecodec.zoo`); :meth:`stylecodec.codec.Codec.analyze` runs them on a stream.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import StylecodecError

__all__ = ["AnalysisHeads", "HeadsError", "INPUTS", "N_POINTS", "landmarks_to_pixels", "pixels_to_landmarks"]

INPUTS = ("basic", "basic+pred")
N_POINTS = 68


class HeadsError(StylecodecError):
    """A model has no analysis heads, or its heads do not belong to it."""


def _mlp(d_in: int, hidden: int, depth: int, d_out: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else hidden, hidden), nn.GELU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden if depth else d_in, d_out))
    return nn.Sequential(*layers)


class AnalysisHeads(nn.Module):
    """Two small MLPs on standardised basic-layer features: landmarks and identity.

    Buffers ``in_mean`` / ``in_std`` [basic_dim + pred_dim] standardise the features (set by the
    trainer from training data); ``mean_shape`` [68, 2] is the landmark output at init.
    """

    def __init__(self,
        basic_dim: int,             # d_basic: size of ŷ_basic.
        pred_dim:  int = 0,         # Summed size of the predicted higher layers (0: inputs "basic").
        hidden:    int = 512,       # MLP width.
        depth:     int = 3,         # MLP hidden layers.
        embed_dim: int = 512,       # Identity embedding size (the teacher's).
        dropout:   float = 0.0,     # Dropout after each hidden layer (training only).
    ):
        super().__init__()
        self.meta: dict = {}        # training record stored with the heads (plain values)
        self.config = {"basic_dim": int(basic_dim), "pred_dim": int(pred_dim), "hidden": int(hidden),
                       "depth": int(depth), "embed_dim": int(embed_dim), "dropout": float(dropout)}
        d_in = basic_dim + pred_dim
        self.register_buffer("in_mean", torch.zeros(d_in))
        self.register_buffer("in_std", torch.ones(d_in))
        self.register_buffer("mean_shape", torch.full((N_POINTS, 2), 0.5))
        self.landmark_mlp = _mlp(d_in, hidden, depth, 2 * N_POINTS, dropout)
        self.identity_mlp = _mlp(d_in, hidden, depth, embed_dim, dropout)
        nn.init.zeros_(self.landmark_mlp[-1].weight)
        nn.init.zeros_(self.landmark_mlp[-1].bias)

    @property
    def inputs(self) -> str:
        return "basic+pred" if self.config["pred_dim"] else "basic"

    @property
    def input_dim(self) -> int:
        """Width of the features :meth:`forward` reads."""
        return self.in_mean.numel()

    def features(self, y_hat: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decoder latents [ŷ_basic, ŷ_middle, ŷ_enhanced] (each [N, d_l]; the higher ones LSET
        predictions) -> head input [N, basic_dim (+ pred_dim)] on the heads' device."""
        parts = list(y_hat) if self.config["pred_dim"] else [y_hat[0]]
        x = torch.cat([p.float() for p in parts], 1).to(self.in_mean.device)
        if x.shape[1] != self.in_mean.numel():
            raise HeadsError(f"the heads take {self.in_mean.numel()} features, the codec gives {x.shape[1]}")
        return x

    @torch.no_grad()
    def set_input_stats(self, feats: torch.Tensor) -> None:
        """Standardise by the per-feature mean / std of ``feats`` [M, d_in]."""
        self.in_mean.copy_(feats.float().mean(0))
        self.in_std.copy_(feats.float().std(0).clamp_min(1e-6))

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """feats [N, d_in] -> {"landmarks": [N, 68, 2] normalised, "identity": [N, embed_dim] unit}."""
        x = (feats.float() - self.in_mean) / self.in_std
        lm = self.mean_shape + self.landmark_mlp(x).view(-1, N_POINTS, 2)
        emb = nn.functional.normalize(self.identity_mlp(x), dim=1, eps=1e-8)
        return {"landmarks": lm, "identity": emb}


# -------------------------------------------------------------------- coordinates
def landmarks_to_pixels(lm, resolution: int):
    """Normalised [0, 1] coordinates -> pixels of a resolution x resolution image (u·R − 0.5)."""
    return lm * resolution - 0.5


def pixels_to_landmarks(px, resolution: int):
    """Pixels of a resolution x resolution image -> normalised coordinates ((p + 0.5) / R)."""
    return (px + 0.5) / resolution
