"""Shared helpers of the evaluation tools: image listing, ``--shard k/N``, atomic files, names."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ..files import write_atomic
from ..errors import StylecodecError

__all__ = ["IMAGE_EXTS", "list_images", "parse_shard", "select_shard", "shard_tag", "write_text",
           "write_json", "read_json", "write_png", "slug"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


def list_images(folder: str | os.PathLike, val_count: int | None = None, limit: int | None = None) -> list[str]:
    """Image paths under ``folder`` (recursive), relative, '/'-separated, sorted by name.
    ``val_count``: keep only the last N (the project's held-out split); ``limit``: then the first N."""
    root = Path(folder)
    if not root.is_dir():
        raise StylecodecError(f"image folder {root} does not exist")
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.suffix.lower() in IMAGE_EXTS and p.is_file() and not p.name.startswith("."))
    if val_count is not None:
        names = names[-val_count:] if val_count > 0 else []
    if limit is not None:
        names = names[:limit]
    if not names:
        raise StylecodecError(f"no images ({', '.join(IMAGE_EXTS)}) in {root}")
    return names


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'k/N' (0 <= k < N) -> (k, N); None stays None."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise StylecodecError(f"--shard must be k/N with 0 <= k < N (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def select_shard(items: Sequence, shard: tuple[int, int] | None) -> list[tuple[int, object]]:
    """(global index, item) of shard k/N: the items whose sorted index i has i % N == k."""
    if shard is None:
        return list(enumerate(items))
    k, n = shard
    return [(i, it) for i, it in enumerate(items) if i % n == k]


def shard_tag(shard: tuple[int, int] | None) -> str:
    """'' or '.shard-k-of-N' (inserted into per-shard file names)."""
    return "" if shard is None else f".shard-{shard[0]}-of-{shard[1]}"


def write_text(path: str | os.PathLike, text: str) -> None:
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    write_atomic(os.fspath(path), _w)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike, default=None):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def write_png(path: str | os.PathLike, arr: np.ndarray, size: int | None = None) -> None:
    """Save an RGB uint8 array as PNG (resized to ``size`` x ``size`` when given), atomically."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(arr), "RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.LANCZOS)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(os.fspath(path), lambda tmp: img.save(tmp, format="PNG", optimize=True))


def slug(text: str) -> str:
    """A file-name-safe, collision-free form of ``text`` (readable part + 6 hex of its hash)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60] or "x"
    return f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"
