"""Where things live: the shared (read-only) data (``$STYLECODEC_SHARED`` or ``../shared`` beside
the repo) and the user cache (``$STYLECODEC_CACHE`` or ``~/.cache/stylecodec``)."""
from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``$STYLECODEC_SHARED``, else the ``shared`` folder beside the repository checkout."""
    env = os.environ.get("STYLECODEC_SHARED")
    return Path(env) if env else _REPO.parent / "shared"


def cache_root() -> Path:
    """``$STYLECODEC_CACHE``, else ``~/.cache/stylecodec`` (not created here)."""
    return Path(os.environ.get("STYLECODEC_CACHE", Path.home() / ".cache" / "stylecodec"))
