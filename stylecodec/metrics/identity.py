"""Identity preservation: per-pair cosine similarity of face embeddings.

judge='facenet': the differentiable CASIA-WebFace FaceNet (also the training loss), on the
aligned faces resized to 160x160. judge='sface': OpenCV's SFace, which the codec is never
trained with (the evaluation judge of DESIGN.md §3), with YuNet detection + alignment.
judge='dlib': dlib's ResNet descriptor (HOG detection, 5-point chip), the judge of decoded faces'
identity once SFace became a training target of the machine-first basic layer.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import torch

from ..assets.facenet import load_facenet, preprocess
from ..assets.dlib_resnet import DlibResNetJudge
from ..assets.sface import SFaceJudge

__all__ = ["identity_cosine", "embed", "JUDGES", "DIMS"]

JUDGES = ("facenet", "sface", "dlib")
DIMS = {"facenet": 512, "sface": 128, "dlib": 128}


@functools.cache
def _facenet():
    return load_facenet("cpu")


@functools.cache
def _sface():
    return SFaceJudge()


@functools.cache
def _dlib():
    return DlibResNetJudge()


def _stack(images) -> np.ndarray:
    arr = np.asarray(images) if not isinstance(images, np.ndarray) else images
    arr = arr[None] if arr.ndim == 3 else arr
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected RGB uint8 faces (N,H,W,3), got {arr.dtype} {arr.shape}")
    return arr


def embed(images, judge: str = "facenet", batch_size: int = 32) -> np.ndarray:
    """RGB uint8 faces (N,H,W,3) -> (N,D) float32 unit embeddings (D: :data:`DIMS`)."""
    images = _stack(images)
    if judge == "facenet":

        model, out = _facenet(), []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                out.append(model(preprocess(images[i:i + batch_size], size=160)).numpy())
        return np.concatenate(out).astype(np.float32)
    if judge == "sface":
        judge_net = _sface()
        out = judge_net.embed(images, detect=True)
        if judge_net.last_fallback.any():
            warnings.warn(f"SFace: no face detected in {int(judge_net.last_fallback.sum())} of "
                          f"{len(images)} images; their centre crops were embedded", stacklevel=3)
        return out
    if judge == "dlib":
        judge_net = _dlib()
        out = judge_net.embed(images)
        if judge_net.last_fallback.any():
            warnings.warn(f"dlib: no face detected in {int(judge_net.last_fallback.sum())} of {len(images)} "
                          f"images; the fallback box was used", stacklevel=3)
        return out
    raise ValueError(f"unknown identity judge {judge!r} (known: {', '.join(JUDGES)})")


def identity_cosine(a_uint8, b_uint8, judge: str = "facenet", batch_size: int = 32) -> np.ndarray:
    """Cosine similarity of each pair (a[i], b[i]): (N,) float32 in [-1, 1].

    a_uint8, b_uint8: RGB uint8 faces (N,H,W,3) (or one (H,W,3) each); a and b may differ in
    size (each is resized / aligned separately).
    """
    a, b = _stack(a_uint8), _stack(b_uint8)
    if len(a) != len(b):
        raise ValueError(f"need the same number of images on both sides, got {len(a)} and {len(b)}")
    ea, eb = embed(a, judge, batch_size), embed(b, judge, batch_size)
    return np.clip((ea * eb).sum(axis=1), -1.0, 1.0).astype(np.float32)
