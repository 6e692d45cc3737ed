"""Machine heads of the codec objective: D_machine terms read from the basic layer alone.

A head is registered in :data:`stylecodec.train.losses.MACHINE_HEADS` (``--heads NAME,...``) as
``factory(model, identity) -> module``; the module is called ``head(out, x, e_x)`` with the model's
forward output, the original images x [N, 3, R, R] in [-1, 1] and the objective's identity
embeddings of x (computed once per batch; None without an identity net), and returns
{term name: weighted scalar loss}. Its parameters train with the codec's (same optimiser, same
learning rate) and their gradients reach ŷ_basic, so the basic layer learns to carry what the
head needs: the multi-task part of the objective (DESIGN.md §1).

``analysis`` (:class:`AnalysisHeadsTerm`): the :class:`~stylecodec.analysis.heads.AnalysisHeads`
of ``stylecodec analyze`` on ŷ_basic (``out["y_hat"][0]``, the synthesis input the decoder has
after the basic layer), with teachers computed on the fly from x (so it works on generated
faces too and needs no label cache):

- landmarks: dlib 68 points of x (detector without upsampling, on a copy at most 128 px wide;
  faces dlib does not find are left out), loss = inter-ocular NME;
- identity: the objective's identity embeddings of x (facenet CASIA-WebFace), loss = 1 − cos.

The trained heads are exported into RUN_DIR/model.pt (``ck["heads"]``), so ``stylecodec analyze``
works on the codec as trained; ``stylecodec train heads`` can still refine them on the frozen codec.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from ..analysis.heads import AnalysisHeads
from ..metrics.nme import landmark_nme

__all__ = ["AnalysisHeadsTerm", "dlib_teacher", "analysis_term"]


@torch.no_grad()
def dlib_teacher(x: torch.Tensor, detect_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """dlib 68 points of images x [N, 3, R, R] in [-1, 1]: (landmarks [N, 68, 2] normalised to
    [0, 1] as (p + 0.5) / R, found bool [N]) on x's device. The face detector runs on a copy at
    most ``detect_size`` pixels wide (the shape predictor on the full image): it runs on the CPU,
    once per training image, so it must be cheap."""
    from ..analysis.landmarks import dlib_landmarks68

    r = x.shape[-1]
    imgs = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    res = [dlib_landmarks68(im, upsample=0, detect_size=detect_size) for im in imgs]
    lm = torch.from_numpy((np.stack([p for p, _ in res]) + 0.5) / r).float()
    return lm.to(x.device), torch.tensor([ok for _, ok in res], device=x.device)


class AnalysisHeadsTerm(nn.Module):
    """Landmark NME + identity (1 − cos) of :class:`AnalysisHeads` on ŷ_basic, against teachers on x."""

    name = "analysis"

    def __init__(self,
                 basic_dim: int,                                  # d_basic: size of ŷ_basic
                 embed_dim: int = 512,                            # identity size (the teacher's)
                 hidden: int = 256,                               # head MLP width
                 depth: int = 2,                                  # head MLP hidden layers
                 w_landmarks: float = 1.0,                        # weight of the NME term
                 w_identity: float = 1.0,                         # weight of the 1 − cos term
                 stats_momentum: float = 0.01,                    # EMA of the input standardisation
                 teacher: Callable | None = None):                # x -> (landmarks, found); default dlib
        super().__init__()
        self.heads = AnalysisHeads(basic_dim, 0, hidden, depth, embed_dim)
        self.teacher = teacher or dlib_teacher
        self.w_landmarks, self.w_identity, self.momentum = float(w_landmarks), float(w_identity), float(stats_momentum)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def _update_stats(self, feats: torch.Tensor, lm: torch.Tensor, found: torch.Tensor) -> None:
        h = self.heads
        if not bool(self.initialised):
            h.set_input_stats(feats if len(feats) > 1 else torch.cat([feats, feats + 1e-3]))
            if found.any():
                h.mean_shape.copy_(lm[found].mean(0))
            self.initialised.fill_(True)
            return
        m = self.momentum
        h.in_mean.lerp_(feats.float().mean(0), m)
        if len(feats) > 1:
            h.in_std.lerp_(feats.float().std(0).clamp_min(1e-6), m)

    def forward(self, out: dict, x: torch.Tensor, e_x: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Terms {"heads_nme"[, "heads_identity" when e_x [N, embed_dim] is given]}."""
        y_basic = out["y_hat"][0]
        assert y_basic.shape == (x.shape[0], self.heads.config["basic_dim"]), y_basic.shape
        lm_ref, found = self.teacher(x)
        feats = self.heads.features([y_basic])
        if self.training:
            self._update_stats(feats.detach(), lm_ref, found)
        pred = self.heads(feats)
        terms = {"heads_nme": self.w_landmarks * landmark_nme(pred["landmarks"], lm_ref, found)}
        if e_x is not None and self.w_identity > 0:
            terms["heads_identity"] = self.w_identity * (1 - (pred["identity"] * e_x.detach()).sum(1)).mean()
        return terms


def analysis_term(model, identity: nn.Module | None) -> AnalysisHeadsTerm:
    """The ``analysis`` factory: heads on the model's ŷ_basic, identity sized like the teacher's."""
    embed_dim = 512
    if identity is not None:
        r = model.resolution
        with torch.no_grad():
            dev = next(iter(identity.parameters()), model.gain).device
            embed_dim = int(identity(torch.zeros(1, 3, r, r, device=dev)).shape[1])
    return AnalysisHeadsTerm(model.latent_dims[0], embed_dim)
