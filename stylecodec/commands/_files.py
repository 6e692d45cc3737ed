"""Reading a .sfc stream for the stream commands, bounded by the format's cap."""
from __future__ import annotations

from ..bitstream import MAX_STREAM_BYTES
from ..errors import StylecodecError

__all__ = ["read_stream"]


def read_stream(path: str) -> bytes:
    """A .sfc file, at most one byte past the format's cap (unpack then reports the size)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_STREAM_BYTES + 1)
    except OSError as e:
        raise StylecodecError(f"cannot read {path}: {e.strerror or e}") from None
