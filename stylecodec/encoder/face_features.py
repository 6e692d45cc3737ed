"""Frozen face networks the machine-first encoder reads: identity and shape of an aligned face.

For a batch of aligned R x R RGB uint8 faces (the codec's layout):

- ``identity`` float32 [N, 128]: SFace's embedding (OpenCV zoo, int8; YuNet finds the face inside
  the aligned image) of the face and of its mirror image, averaged and L2-normalised. SFace is the
  strongest face recogniser with weights obtainable here (LFW 99.35 % on originals); averaging
  over the mirror is the usual test-time flip.
- ``landmarks`` float32 [N, 68, 2]: dlib's 68 points, normalised to [0, 1] as (p + 0.5) / R.
- ``found`` bool [N]: dlib's detector found the face (else its points were fitted to the whole
  image, as :func:`stylecodec.assets.landmarks.dlib_points` does).

These run on the encoder side only (the decoder never needs them), so they need not be
bit-reproducible. They are not part of the model's weights: the codec fetches them as assets.
"""
from __future__ import annotations

import numpy as np

from ..assets.sface import SFaceJudge

__all__ = ["FaceFeatures", "mirror_landmarks", "MIRROR68"]

# dlib 68-point indices of the mirror image (left <-> right; iBUG order)
MIRROR68 = ([16 - i for i in range(17)] + [26 - i for i in range(10)] + list(range(27, 31)) + [35, 34, 33, 32, 31]
            + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40] + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
            + [64, 63, 62, 61, 60, 67, 66, 65])


def mirror_landmarks(points: np.ndarray) -> np.ndarray:
    """Normalised 68 points [..., 68, 2] of a face -> those of its mirror image."""
    out = np.array(points[..., MIRROR68, :], copy=True)
    out[..., 0] = 1.0 - out[..., 0]
    return out


class FaceFeatures:
    """Callable: uint8 faces [N, R, R, 3] -> {"identity", "landmarks", "found"} (module docstring)."""

    def __init__(self):
        import cv2

        cv2.setNumThreads(1)        # OpenCV's pool otherwise spins on every core (measured: 2/3 system time)
        self._sface = SFaceJudge()

    def identity(self, faces: np.ndarray) -> np.ndarray:
        """[N, 128] float32: flip-averaged, L2-normalised SFace embeddings."""
        e = self._sface.embed(faces) + self._sface.embed(np.ascontiguousarray(faces[:, :, ::-1]))
        return (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def __call__(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        from ..assets.landmarks import dlib_points

        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[3] != 3 or faces.shape[1] != faces.shape[2]:
            raise ValueError(f"expected square RGB uint8 faces [N, R, R, 3], got {faces.dtype} {faces.shape}")
        r = faces.shape[1]
        points = [dlib_points(f) for f in faces]
        return {"identity": self.identity(faces),
                "landmarks": np.stack([(p + 0.5) / r for p, _ in points]).astype(np.float32),
                "found": np.array([ok for _, ok in points], bool)}
