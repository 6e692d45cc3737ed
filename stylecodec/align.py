"""Face alignment to the layout of the training data (UTKFace "aligned & cropped").

    faces = align(image, 256)                # [AlignedFace] of the largest face; raises NoFaceError
    faces = align(image, 256, which="all")   # every face, largest first
    codec = Codec(model, align=FaceAligner("auto"))   # the compress hook (see FaceAligner)

Steps: detect five points (MTCNN primary; dlib 68 -> 5 as the fallback; on the image with a
black border of :data:`DETECT_PAD`, so faces that fill the frame are located correctly), fit a
similarity transform (rotation + uniform scale + shift, least squares / Umeyama, no reflection) from them
to :data:`TEMPLATE_5` scaled to the output side, warp (bicubic, area pre-shrink for large
photos, replicated border) to an R x R uint8 RGB face.

Coordinates: pixel centres are integers; a normalised coordinate u in [0, 1] maps to pixel
``u * side - 0.5`` of a side-pixel image (and back: ``(p + 0.5) / side``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .assets.landmarks import dlib_landmarks68, mtcnn_detect
from .errors import StylecodecError
from .images import centre_square, load_image

__all__ = ["TEMPLATE_5", "AUTO_THRESHOLD", "MIN_FACE_PROB", "DETECT_PAD", "ALIGN_MODES", "NoFaceError", "AlignedFace",
           "detect_faces", "similarity_transform", "template_points", "warp_face", "align", "layout_error",
           "FaceAligner"]

# Median MTCNN 5 points of UTKFace train faces, normalised to [0, 1]: (x, y) of the left eye,
# right eye, nose tip, left and right mouth corner (image-left first). Measured with
#   python experiments/measure_template.py --count 200
# (200 train images, every 113th by name; 197 with a face of confidence >= 0.9; detection as in
# detect_faces, i.e. with the DETECT_PAD border). Interquartile range per coordinate: 0.015-0.042.
TEMPLATE_5 = np.array([
    (0.3015, 0.2945),
    (0.6972, 0.2974),
    (0.4970, 0.5283),
    (0.3212, 0.6965),
    (0.6710, 0.6983),
], np.float64)

# --align auto: a face whose layout error (see layout_error) in the centre square is at most
# this is taken as already aligned. On those 197 UTKFace faces (same script): median 0.063,
# p90 0.109, p95 0.124, p99 0.150, max 0.155. LFW deep-funneled crops measure 0.20-0.46.
AUTO_THRESHOLD = 0.2
MIN_FACE_PROB = 0.9          # MTCNN faces below this confidence are ignored
# Black border added (fraction of the longer side) before detection. MTCNN places the points of a
# face whose box leaves the image far off (UTKFace crops: eyes ~10 px too high at 200 px); with the
# border its points agree with dlib's to 1-5 px (1,500-apart UTKFace samples, borders 0.25-0.6).
DETECT_PAD = 0.25
ALIGN_MODES = ("auto", "on", "off")
DETECTORS = ("auto", "mtcnn", "dlib")


class NoFaceError(StylecodecError):
    """No face was found in an image that must be aligned."""


@dataclass
class AlignedFace:
    """One aligned face. ``transform`` [2, 3] maps source pixels (x, y, 1) to aligned pixels."""

    image: np.ndarray        # uint8 [R, R, 3] RGB
    transform: np.ndarray    # float64 [2, 3]
    points5: np.ndarray      # float32 [5, 2] source pixels
    box: np.ndarray          # float32 [4] x1, y1, x2, y2, source pixels
    score: float             # detector confidence (dlib: 1.0)
    detector: str            # "mtcnn" | "dlib"


def _rgb_array(image) -> np.ndarray:
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    return np.asarray(load_image(image))


def _dlib_five(img: np.ndarray):
    pts, found = dlib_landmarks68(img)
    if not found:
        return []
    five = np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]]).astype(np.float32)
    box = np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)
    return [(box, 1.0, five, "dlib")]


def detect_faces(image, detector: str = "auto", min_prob: float = MIN_FACE_PROB) -> list[tuple]:
    """Faces as (box [4], score, points5 [5, 2], detector name), largest box first.

    detector: "mtcnn", "dlib" (largest face only) or "auto" (MTCNN, then dlib when MTCNN finds
    no face of confidence >= ``min_prob``). Returns [] when no face is found.
    """
    if detector not in DETECTORS:
        raise StylecodecError(f"detector must be one of {DETECTORS}, got {detector!r}")
    img = _rgb_array(image)
    pad = int(round(DETECT_PAD * max(img.shape[:2])))
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
    faces: list[tuple] = []
    if detector in ("auto", "mtcnn"):
        boxes, probs, points = mtcnn_detect(padded)
        faces = [(b, float(p), pts, "mtcnn") for b, p, pts in zip(boxes, probs, points) if p >= min_prob]
    if not faces and detector in ("auto", "dlib"):
        faces = _dlib_five(padded)
    faces = [(box - pad, score, pts - pad, name) for box, score, pts, name in faces]
    return sorted(faces, key=lambda f: -float((f[0][2] - f[0][0]) * (f[0][3] - f[0][1])))


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991, no reflection) mapping src [K, 2] onto dst [K, 2]: [2, 3]."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    e = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ e @ vt
    var = (s ** 2).sum() / len(src)
    scale = float(np.trace(np.diag(sig) @ e) / var) if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def template_points(resolution: int) -> np.ndarray:
    """:data:`TEMPLATE_5` in pixels of a resolution x resolution image: [5, 2] float64."""
    return TEMPLATE_5 * resolution - 0.5


def warp_face(img: np.ndarray, transform: np.ndarray, resolution: int) -> np.ndarray:
    """Warp an RGB uint8 image by ``transform`` [2, 3] into [resolution, resolution, 3] uint8.
    When the transform shrinks (scale < 0.8) the source is first area-resized, so large photos
    do not alias."""
    m = np.asarray(transform, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.8:
        h, w = img.shape[:2]
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        kx, ky = nw / w, nh / h                       # small pixel q = (p + 0.5) k - 0.5
        back = np.array([[1 / kx, 0, 0.5 / kx - 0.5], [0, 1 / ky, 0.5 / ky - 0.5], [0, 0, 1]])
        m = m @ back
    return cv2.warpAffine(np.ascontiguousarray(img), m, (resolution, resolution), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)


def align(image, resolution: int, which: str = "largest", detector: str = "auto") -> list[AlignedFace]:
    """Aligned R x R faces of an image (path, PIL image or uint8 [H, W, 3] RGB array).

    which: "largest" (a list of one) or "all" (largest first). Raises :class:`NoFaceError`
    when no face is found.
    """
    if which not in ("largest", "all"):
        raise StylecodecError(f'which must be "largest" or "all", got {which!r}')
    img = _rgb_array(image)
    faces = detect_faces(img, detector)
    if not faces:
        raise NoFaceError(f"no face found in the {img.shape[1]}x{img.shape[0]} image (MTCNN and dlib); "
                          "pass a photo with a visible frontal face, or compress with --align off")
    out = []
    for box, score, pts, name in faces[:1] if which == "largest" else faces:
        m = similarity_transform(pts, template_points(resolution))
        out.append(AlignedFace(warp_face(img, m, resolution), m, pts, np.asarray(box, np.float32), score, name))
    return out


def layout_error(points_norm, template: np.ndarray = TEMPLATE_5) -> float:
    """Mean distance of normalised 5 points [5, 2] to the template, in template inter-ocular units."""
    p = np.asarray(points_norm, np.float64)
    return float(np.linalg.norm(p - template, axis=1).mean() / np.linalg.norm(template[1] - template[0]))


class FaceAligner:
    """The ``align`` hook of :class:`stylecodec.codec.Codec`: (PIL image, R) -> R x R PIL image.

    mode "on": always detect + align (:class:`NoFaceError` without a face). "off": centre
    square (the codec's default). "auto": detect; when the largest face already sits where the
    template puts it (layout error in the centre square <= :data:`AUTO_THRESHOLD`, i.e. a
    UTKFace-like crop) or no face is found, use the centre square, else align.
    ``last`` describes the latest decision (for messages).
    """

    def __init__(self, mode: str = "auto", detector: str = "auto"):
        if mode not in ALIGN_MODES:
            raise StylecodecError(f"align mode must be one of {ALIGN_MODES}, got {mode!r}")
        self.mode, self.detector, self.last = mode, detector, ""

    def __call__(self, img, size: int):
        if self.mode == "off":
            self.last = "centre square (--align off)"
            return centre_square(img, size)
        arr = np.asarray(img.convert("RGB"))
        faces = detect_faces(arr, self.detector)
        if not faces and self.mode == "auto":
            self.last = "centre square (no face detected)"
            return centre_square(img, size)
        if not faces:
            raise NoFaceError(f"no face found in the {arr.shape[1]}x{arr.shape[0]} image (MTCNN and dlib); "
                              "use --align off to code the centre square as it is")
        box, score, pts, name = faces[0]
        h, w = arr.shape[:2]
        s = min(w, h)
        off = np.array([(w - s) // 2, (h - s) // 2], np.float64)
        err = layout_error((pts - off + 0.5) / s)
        if self.mode == "auto" and err <= AUTO_THRESHOLD:
            self.last = f"centre square (face already aligned: layout error {err:.2f})"
            return centre_square(img, size)
        m = similarity_transform(pts, template_points(size))
        self.last = f"aligned ({name}, layout error {err:.2f})"
        return Image.fromarray(warp_face(arr, m, size), "RGB")
