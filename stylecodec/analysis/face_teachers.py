"""Frozen face-network outputs of whole face sets, computed once and cached on disk.

For every face as the codec sees it (R x R, the training layout) and for its mirror image:

- ``sface``    float32 [N, 2, 128]  SFace embedding (unit) of the face and of its mirror
- ``sface_fb`` bool    [N, 2]       YuNet found no face in the R x R face (centre crop embedded)
- ``facenet``  float32 [N, 2, 512]  facenet CASIA-WebFace embedding (unit), face and mirror
- ``landmarks`` float32 [N, 68, 2]  dlib 68 points of the face, normalised (p + 0.5) / R
- ``found``    bool    [N]          dlib's detector found the face
- ``files``    str     [N]          the names, in order

``flip_identity(t)`` gives what :class:`~stylecodec.encoder.face_features.FaceFeatures` computes at
encode time (SFace of face + mirror, averaged, unit). Cache: ``<cache>/teacher2/<tag>-<key>.npz``,
key = sha256 of (tag, R, names)[:16]; work is saved per chunk of 256 faces, so an interrupted run
resumes (:func:`stylecodec.analysis.teacher.chunked_npz`).

    python -m stylecodec.analysis.face_teachers [--helper]   (UTKFace; LFW: stylecodec.eval.lfw_features)

``--helper`` beside a run that is computing the same cache (e.g. a trainer's first start) fills chunks
from the end on another core, halving the wait; the running process skips what it finds finished.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..assets.facenet import load_facenet, preprocess
from ..assets.landmarks import dlib_points
from ..assets.sface import SFaceJudge
from ..data import list_images
from ..images import load_rgb
from ..paths import cache_root, shared_dir
from .teacher import chunked_npz

__all__ = ["face_teachers", "utkface_teachers", "flip_identity", "cache_key"]

RESOLUTION = 256


def cache_key(tag: str, names: Sequence[str], resolution: int = RESOLUTION) -> str:
    h = hashlib.sha256(f"{tag}\n{resolution}\n".encode())
    for n in names:
        h.update(f"{n}\n".encode())
    return h.hexdigest()[:16]


def flip_identity(t: dict) -> np.ndarray:
    """[N, 128] float32: SFace of face + mirror, averaged and L2-normalised (the encoder's identity input)."""
    e = t["sface"].astype(np.float64).sum(1)
    return (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def face_teachers(tag: str, names: Sequence[str], load_faces: Callable[[Sequence[str]], np.ndarray],
                  resolution: int = RESOLUTION, progress: bool = True, helper: bool = False) -> dict | None:
    """Cached teacher outputs (module docstring) of the faces ``load_faces(names[i:j])`` -> uint8 [n, R, R, 3].
    ``helper``: only fill chunks from the end for a run in progress (:func:`chunked_npz`); returns None."""
    import cv2

    cv2.setNumThreads(1)          # OpenCV's pool otherwise spins on every core (measured: 2/3 system time)
    names = list(names)
    nets: dict = {}

    def compute(s: int, e: int) -> dict:
        if not nets:
            nets["sface"], nets["facenet"] = SFaceJudge(), load_facenet("cpu")
        imgs = load_faces(names[s:e])
        flips = np.ascontiguousarray(imgs[:, :, ::-1])
        sf, fb = [], []
        for batch in (imgs, flips):
            sf.append(nets["sface"].embed(batch))
            fb.append(nets["sface"].last_fallback.copy())
        with torch.no_grad():
            fn = [nets["facenet"](preprocess(b)).float().numpy() for b in (imgs, flips)]
        lm = [dlib_points(im) for im in imgs]
        return {"sface": np.stack(sf, 1).astype(np.float32), "sface_fb": np.stack(fb, 1),
                "facenet": np.stack(fn, 1).astype(np.float32),
                "landmarks": np.stack([(pts + 0.5) / resolution for pts, _ in lm]).astype(np.float32),
                "found": np.array([ok for _, ok in lm], bool)}

    path = cache_root() / "teacher2" / f"{tag}-{cache_key(tag, names, resolution)}.npz"
    return chunked_npz(path, len(names), compute, chunk=256, desc=f"{tag} teachers", progress=progress,
                       meta={"files": np.array(names)}, helper=helper)


def utkface_teachers(root: str | Path | None = None, progress: bool = True, helper: bool = False) -> dict | None:
    """Teacher outputs of every UTKFace file (train and held-out; sorted by name), centre square -> 256²."""
    root = Path(root) if root is not None else shared_dir() / "data" / "utkface"
    names = list_images(root)
    return face_teachers("utkface", names, lambda ns: np.stack([load_rgb(root / n, RESOLUTION) for n in ns]),
                         progress=progress, helper=helper)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stylecodec.analysis.face_teachers", description=__doc__.splitlines()[0])
    p.add_argument("--helper", action="store_true",
                   help="help a run in progress on another core: fill chunks from the end, stop where they meet")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = utkface_teachers(helper=args.helper)
    if out is None:
        print("utkface: helper finished (the forward run merges the chunks)")
        return 0
    print(f"utkface: {len(out['files'])} faces; SFace fallbacks {int(out['sface_fb'].sum())}, dlib found "
          f"{int(out['found'].sum())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
