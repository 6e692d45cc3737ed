"""Disk cache of face alignments by image content (what LFW runs spend most of their time on).

    cache = AlignmentCache(cache_root() / "align", 256)
    face, found = cache.aligned(img)         # uint8 [R, R, 3]; found False: no face, centre square
    cache.save()                             # also every SAVE_EVERY_S seconds inside aligned()

Each entry maps a content key of the photo (:func:`content_key`) to the 2 x 3 similarity
transform :func:`stylecodec.align.align` found for it, or to "no face" (NaN rows: centre
square), so another process or a later run warps (about a millisecond) instead of detecting
again (MTCNN, with dlib as the fallback). The warp is :func:`stylecodec.align.warp_face` with
the stored float64 transform, so a cached face is bit-identical to the freshly aligned one.

File: ``DIR/align-r{R}-{tag}.npz`` (``keys`` str [n], ``transforms`` float64 [n, 2, 3]); ``tag``
hashes everything alignment depends on (:data:`stylecodec.align.TEMPLATE_5`, the detector
settings, :data:`VERSION`), so a change there starts a new file. Processes may share one file:
a save merges this process's new entries with the file's under an exclusive lock and replaces
it atomically. A damaged file is renamed ``*.bad`` with a warning and the cache starts empty.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .. import align
from ..files import file_lock, write_npz
from ..images import centre_square

__all__ = ["AlignmentCache", "content_key", "SAVE_EVERY_S", "VERSION"]

VERSION = 1             # bump when align()'s output for the same transform changes (e.g. the warp)
SAVE_EVERY_S = 60.0     # new entries are written at most this often inside aligned(), and on save()


def content_key(img: np.ndarray) -> str:
    """Stable content key of an image array (the same in every process, unlike ``hash``)."""
    return hashlib.sha1(repr(img.shape).encode() + np.ascontiguousarray(img).tobytes()).hexdigest()[:20]


def _settings_tag(resolution: int) -> str:
    what = (VERSION, resolution, align.TEMPLATE_5.tobytes(), align.MIN_FACE_PROB, align.DETECT_PAD, "detector=auto")
    return hashlib.sha1(repr(what).encode()).hexdigest()[:10]


class AlignmentCache:
    """Content key -> alignment transform of one output resolution, kept on disk (module docstring)."""

    def __init__(self, directory: str | os.PathLike | None, resolution: int):
        """``directory`` None: this process only (nothing read or written)."""
        self.resolution = int(resolution)
        self.path = None if directory is None else (
            Path(directory) / f"align-r{self.resolution}-{_settings_tag(self.resolution)}.npz")
        self._known: dict[str, np.ndarray] = self._read()
        self._new: dict[str, np.ndarray] = {}
        self._last_save = time.monotonic()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._known)

    def _read(self) -> dict[str, np.ndarray]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            with np.load(self.path, allow_pickle=False) as z:
                keys, ms = z["keys"], z["transforms"]
            if ms.shape != (len(keys), 2, 3) or ms.dtype != np.float64:
                raise ValueError(f"transforms {ms.dtype} {ms.shape} for {len(keys)} keys")
            return {str(k): m for k, m in zip(keys, ms)}
        except Exception as e:  # noqa: BLE001  a damaged cache must not stop a run
            bad = self.path.with_name(self.path.name + ".bad")
            with contextlib.suppress(OSError):
                os.replace(self.path, bad)
            warnings.warn(f"alignment cache {self.path} is damaged ({type(e).__name__}: {e}); moved to {bad.name}, "
                          "starting empty", stacklevel=3)
            return {}

    def aligned(self, img: np.ndarray, key: str | None = None) -> tuple[np.ndarray, bool]:
        """(uint8 [R, R, 3] aligned face of the RGB uint8 ``img``, whether a face was found; without
        one: the centre square). ``key``: its :func:`content_key`, if already computed."""
        key = content_key(img) if key is None else key
        m = self._known.get(key)
        if m is None:
            self.misses += 1
            try:
                face = align.align(img, self.resolution)[0]
                m, out = face.transform.astype(np.float64), face.image
            except align.NoFaceError:
                m, out = np.full((2, 3), np.nan), None
            self._known[key] = self._new[key] = m
            if time.monotonic() - self._last_save >= SAVE_EVERY_S:
                self.save()
        else:
            self.hits += 1
            out = None
        found = bool(np.isfinite(m).all())
        if out is None:
            out = (align.warp_face(np.ascontiguousarray(img), m, self.resolution) if found
                   else np.asarray(centre_square(Image.fromarray(img), self.resolution)))
        return out, found

    def save(self) -> None:
        """Merge this process's new entries into the file (under the lock; atomic replace)."""
        self._last_save = time.monotonic()
        if not self._new or self.path is None:
            return

        with file_lock(self.path):
            merged = {**self._read(), **self._new}
            keys = sorted(merged)
            write_npz(self.path, {"keys": np.array(keys), "transforms": np.stack([merged[k] for k in keys])})
        self._known.update(merged)
        self._new = {}
