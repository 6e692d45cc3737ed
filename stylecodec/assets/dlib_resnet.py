"""dlib's ResNet face descriptor (128-d, 99.38 % on LFW by its authors) as an identity judge.

``dlib_face_recognition_resnet_model_v1.dat`` and ``shape_predictor_5_face_landmarks.dat`` ship in
the ``face-recognition-models`` package (CC0 / Boost licence, sha256-checked here). Pipeline, as
dlib's own example: HOG frontal detector (largest face) -> 5-point shape -> face chip (padding 0.25)
-> descriptor. A judge only: stylecodec never trains with it, so once SFace became a training target
of the basic layer (issue 16), identity of decoded faces is judged by this network (issue 17).
"""
from __future__ import annotations

import functools

import numpy as np

from .fetch import checked_file, installed_package_folder
from .landmarks import import_dlib

__all__ = ["DlibResNetJudge", "fetch", "MODELS", "FALLBACK_BOX"]

MODELS = {  # file in face_recognition_models/models -> sha256
    "dlib_face_recognition_resnet_model_v1.dat":
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    "shape_predictor_5_face_landmarks.dat":
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
}
# (left, top, right, bottom) as fractions of the frame: the median HOG box on 200 held-out aligned
# UTKFace faces at 256² ([18, 19, 241, 242] px); used where no face is detected (blurred decodes)
FALLBACK_BOX = (0.07, 0.075, 0.94, 0.945)


def fetch() -> list:
    """Paths of [descriptor network, 5-point shape predictor], sha256-checked."""
    folder = installed_package_folder("face_recognition_models", "face-recognition-models") / "models"
    return [checked_file(folder / name, digest) for name, digest in MODELS.items()]


@functools.cache
def _nets():
    dlib = import_dlib()
    net, sp5 = fetch()
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(sp5)), \
        dlib.face_recognition_model_v1(str(net))


class DlibResNetJudge:
    """images (N, H, W, 3) RGB uint8 -> (N, 128) float32 descriptors; ``last_fallback`` (N,) bool marks
    images where no face was detected and :data:`FALLBACK_BOX` was used. dlib's own metric is the
    Euclidean distance of raw descriptors (same person below 0.6); ``unit=True`` normalises them for
    cosine scoring (LFW threshold selection)."""

    def __init__(self, upsample: int = 1):
        self.upsample = int(upsample)                      # HOG pyramid upsampling (1: dlib's default)
        self.dlib, self.detector, self.shape5, self.net = _nets()
        self.last_fallback = np.zeros(0, bool)

    def box(self, img: np.ndarray):
        """The largest detected face, or the fallback box; (dlib.rectangle, fell back)."""
        found = self.detector(img, self.upsample)
        if len(found):
            return max(found, key=lambda r: r.area()), False
        h, w = img.shape[:2]
        l, t, r, b = FALLBACK_BOX
        return self.dlib.rectangle(int(l * w), int(t * h), int(r * w), int(b * h)), True

    def embed(self, images: np.ndarray, unit: bool = True) -> np.ndarray:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected RGB uint8 faces (N,H,W,3), got {images.dtype} {images.shape}")
        out = np.zeros((len(images), 128), np.float32)
        fell = np.zeros(len(images), bool)
        for i, img in enumerate(images):
            img = np.ascontiguousarray(img)
            rect, fell[i] = self.box(img)
            d = np.asarray(self.net.compute_face_descriptor(img, self.shape5(img, rect)), np.float32)
            out[i] = d / max(float(np.linalg.norm(d)), 1e-12) if unit else d
        self.last_fallback = fell
        return out
