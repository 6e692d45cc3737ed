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

Cached landmarks instead of dlib at training time (``train codec --teacher-labels FILE``; for
machines without dlib, e.g. a lent GPU box): :class:`LabelledImages` hands each training image
over with its cached dlib points (``python -m stylecodec.analysis.teacher --export FILE``, matched
by file name) and mirrors image and points together (:data:`MIRROR_68`) when x-flipping.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from ..analysis.heads import AnalysisHeads
from ..assets.landmarks import dlib_landmarks68
from ..errors import StylecodecError
from ..metrics.nme import landmark_nme

__all__ = ["AnalysisHeadsTerm", "dlib_teacher", "analysis_term", "MIRROR_68", "LabelledImages",
           "dataset_names", "read_landmark_labels"]

# iBUG 68-point index of each point's mirror image (left <-> right): jaw, brows, nose, eyes, mouth.
MIRROR_68 = (list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
             + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
             + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])
assert sorted(MIRROR_68) == list(range(68)) and all(MIRROR_68[MIRROR_68[i]] == i for i in range(68))


@torch.no_grad()
def dlib_teacher(x: torch.Tensor, detect_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """dlib 68 points of images x [N, 3, R, R] in [-1, 1]: (landmarks [N, 68, 2] normalised to
    [0, 1] as (p + 0.5) / R, found bool [N]) on x's device. The face detector runs on a copy at
    most ``detect_size`` pixels wide (the shape predictor on the full image): it runs on the CPU,
    once per training image, so it must be cheap."""
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

    def forward(self, out: dict, x: torch.Tensor, e_x: torch.Tensor | None = None,
                labels: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Terms {"heads_nme"[, "heads_identity" when e_x [N, embed_dim] is given]}. ``labels``:
        cached (landmarks [N, 68, 2], found [N]) of x; None = run the teacher on x."""
        y_basic = out["y_hat"][0]
        assert y_basic.shape == (x.shape[0], self.heads.config["basic_dim"]), y_basic.shape
        lm_ref, found = labels if labels is not None else self.teacher(x)
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


# ---------------------------------------------------------------- cached teacher labels

def dataset_names(dataset: Dataset) -> list[str]:
    """File names of a training set's items, in item order (image folders, .npz packs, concatenations)."""
    if isinstance(dataset, ConcatDataset):
        return [n for part in dataset.datasets for n in dataset_names(part)]
    names = getattr(dataset, "files", None) or getattr(dataset, "names", None)
    if names is None:
        raise StylecodecError(f"{type(dataset).__name__} records no file names (raw .npy packs do not); cached "
                              "teacher labels need an image folder or .npz packs")
    return [os.path.basename(str(n)) for n in names]


def read_landmark_labels(path: str | os.PathLike, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(landmarks float32 [N, 68, 2] in [0, 1], found bool [N]) of ``names`` from a labels file
    (``files``, ``landmarks``, ``found``: a teacher cache or its ``--export``), matched by base name."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = [os.path.basename(str(f)) for f in z["files"]]
            lm, found = z["landmarks"].astype(np.float32), z["found"].astype(bool)
    except (OSError, KeyError, ValueError) as e:
        raise StylecodecError(f"cannot read teacher labels {path}: {e}") from None
    if lm.shape != (len(files), 68, 2) or found.shape != (len(files),):
        raise StylecodecError(f"{path}: landmarks {lm.shape} / found {found.shape} do not match {len(files)} files")
    row = {f: i for i, f in enumerate(files)}
    missing = [n for n in names if n not in row]
    if missing:
        raise StylecodecError(f"{path} has no labels for {len(missing)} of the {len(names)} training images "
                              f"(e.g. {missing[0]}); label the same split with python -m stylecodec.analysis.teacher")
    idx = np.array([row[n] for n in names], dtype=np.int64)
    return torch.from_numpy(lm[idx]), torch.from_numpy(found[idx])


class LabelledImages(Dataset):
    """Items (x [3, R, R], landmarks [68, 2], found []) of ``dataset`` (built WITHOUT x-flips) with
    cached dlib points; ``xflip`` mirrors image and points together with probability 1/2."""

    def __init__(self, dataset: Dataset, labels_path: str | os.PathLike, xflip: bool = False):
        parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
        if any(getattr(d, "xflip", False) for d in parts):
            raise StylecodecError("LabelledImages flips image and points itself: build the dataset with xflip=False")
        self.dataset, self.xflip = dataset, bool(xflip)
        self.landmarks, self.found = read_landmark_labels(labels_path, dataset_names(dataset))
        self.mirror = torch.tensor(MIRROR_68)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, lm = self.dataset[i], self.landmarks[i]
        if self.xflip and bool(torch.rand(()) < 0.5):
            x = x.flip(2)
            lm = torch.stack([1 - lm[self.mirror, 0], lm[self.mirror, 1]], dim=1)
        return x, lm, self.found[i]
