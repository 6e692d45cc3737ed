"""Shared helpers of the evaluation tools: atomic text / JSON / PNG files, file-name slugs."""
from __future__ import annotations

import hashlib
import json
import os
import re

import numpy as np
from PIL import Image

from ..files import write_atomic

__all__ = ["write_text", "write_json", "read_json", "write_png", "slug"]


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
    img = Image.fromarray(np.ascontiguousarray(arr), "RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.LANCZOS)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(os.fspath(path), lambda tmp: img.save(tmp, format="PNG", optimize=True))


def slug(text: str) -> str:
    """A file-name-safe, collision-free form of ``text`` (readable part + 6 hex of its hash)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60] or "x"
    return f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def largest_within(items, limit: float, size):
    """(item, fits): the item of largest ``size(item)`` not above ``limit``, else (fits False) the smallest
    one. How an anchor is matched to a stylecodec file ("at most the same bytes"); ``items`` not empty."""
    items = list(items)
    fit = [it for it in items if size(it) <= limit]
    return (max(fit, key=size), True) if fit else (min(items, key=size), False)
