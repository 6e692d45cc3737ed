"""Landmark teachers / judges: dlib 68 points and MTCNN 5 points.

dlib: frontal HOG face detector + ``shape_predictor_68_face_landmarks.dat`` from the
``face-recognition-models`` package (located without importing it, so its pkg_resources
import -- which needs setuptools<81 -- is never run). MTCNN: ``facenet_pytorch.MTCNN``, whose
P/R/O-net weights ship inside facenet-pytorch 2.5.3. Weight files are sha256-checked once.
Coordinates are (x, y) in input-image pixels, float32.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from facenet_pytorch import MTCNN
from PIL import Image

from .fetch import AssetError, checked_file, installed_package_folder

__all__ = ["dlib_landmarks68", "dlib_points", "mtcnn_detect", "fetch_dlib", "fetch_mtcnn"]

DLIB_68_SHA256 = "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f"
MTCNN_SHA256 = {   # facenet-pytorch 2.5.3, facenet_pytorch/data
    "pnet.pt": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet.pt": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet.pt": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}


def fetch_dlib() -> list[Path]:
    """[path of shape_predictor_68_face_landmarks.dat] (package face-recognition-models)."""
    folder = installed_package_folder("face_recognition_models", "face-recognition-models")
    return [checked_file(folder / "models" / "shape_predictor_68_face_landmarks.dat", DLIB_68_SHA256)]


def fetch_mtcnn() -> list[Path]:
    """Paths of MTCNN's [pnet, rnet, onet] weights (package facenet-pytorch==2.5.3)."""
    folder = installed_package_folder("facenet_pytorch", "facenet-pytorch==2.5.3") / "data"
    return [checked_file(folder / name, digest) for name, digest in MTCNN_SHA256.items()]


def import_dlib():
    """The dlib module; AssetError when it is not installed."""
    try:
        import dlib     # here: dlib is optional (GPU boxes without it train with --teacher-labels)
    except ImportError as e:
        raise AssetError("dlib is not installed: pip install dlib-bin") from e
    return dlib


@functools.cache
def _dlib_models():
    dlib = import_dlib()
    (path,) = fetch_dlib()
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))


def dlib_landmarks68(img: np.ndarray, upsample: int = 1, detect_size: int | None = None) -> tuple[np.ndarray, bool]:
    """68 dlib landmarks of the largest face in an (H,W,3) RGB uint8 image.

    Returns ((68,2) float32 (x, y) pixels, found). found=False: no face was detected and the
    points were fitted to the whole image as the face box -- meaningful only for
    already-aligned crops, so callers should treat them as a flagged fallback.
    upsample: detector upsampling passes (1 finds faces down to ~40 px).
    detect_size: run the (costly) detector on a copy whose longer side is at most this many
    pixels and scale its box back; the points are still fitted on the full image (a training-time
    shortcut: faster, at the price of slightly different points).
    """
    import dlib     # here: optional dependency (see _dlib_models, which has already imported it)

    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H,W,3), got {img.dtype} {img.shape}")
    detector, predictor = _dlib_models()
    img = np.ascontiguousarray(img)
    f = 1.0
    small = img
    if detect_size is not None and max(img.shape[:2]) > detect_size:
        f = max(img.shape[:2]) / detect_size
        small = np.asarray(Image.fromarray(img).resize((round(img.shape[1] / f), round(img.shape[0] / f)),
                                                       Image.BILINEAR))
    rects = detector(small, upsample)
    found = len(rects) > 0
    if found:
        rect = max(rects, key=lambda r: r.width() * r.height())
        if f != 1.0:
            rect = dlib.rectangle(round(rect.left() * f), round(rect.top() * f), round(rect.right() * f),
                                  round(rect.bottom() * f))
    else:
        rect = dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
    shape = predictor(img, rect)
    pts = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
    return pts, found


def dlib_points(img: np.ndarray) -> tuple[np.ndarray, bool]:
    """dlib 68 points of one face: detector without upsampling, then with one pass if none is found."""
    pts, ok = dlib_landmarks68(img, upsample=0)
    return (pts, ok) if ok else dlib_landmarks68(img, upsample=1)


@functools.cache
def _mtcnn():
    fetch_mtcnn()
    return MTCNN(keep_all=True, device="cpu")


def mtcnn_detect(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MTCNN faces in an (H,W,3) RGB uint8 image.

    Returns boxes (K,4) [x1, y1, x2, y2], probs (K,), points5 (K,5,2) (x, y) of the eyes,
    nose tip and mouth corners (eyes and corners image-left first); all float32, sorted by
    probability, K=0 when no face is found.
    """
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H,W,3), got {img.dtype} {img.shape}")
    boxes, probs, points = _mtcnn().detect(np.ascontiguousarray(img), landmarks=True)
    if boxes is None:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    order = np.argsort(-probs)
    return (boxes[order].astype(np.float32), probs[order].astype(np.float32),
            points[order].astype(np.float32))
