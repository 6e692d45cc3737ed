"""File helpers of the codec commands: bounded stream reads; atomic writes re-exported from
:mod:`stylecodec.files`."""
from __future__ import annotations

from ..errors import StylecodecError
from ..files import write_atomic, write_bytes

__all__ = ["read_stream", "write_atomic", "write_bytes"]


def read_stream(path: str) -> bytes:
    """A .sfc file, at most one byte past the format's cap (unpack then reports the size)."""
    from ..bitstream import MAX_STREAM_BYTES

    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_STREAM_BYTES + 1)
    except OSError as e:
        raise StylecodecError(f"cannot read {path}: {e.strerror or e}") from None


