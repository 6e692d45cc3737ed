"""File helpers of the codec commands: bounded stream reads and atomic writes (tmp + os.replace)."""
from __future__ import annotations

import os
import tempfile
from typing import Callable

from ..errors import StylecodecError

__all__ = ["read_stream", "write_atomic", "write_bytes", "LAYER_CHOICES"]

LAYER_CHOICES = ("basic", "middle", "enhanced")


def read_stream(path: str) -> bytes:
    """A .sfc file, at most one byte past the format's cap (unpack then reports the size)."""
    from ..bitstream import MAX_STREAM_BYTES

    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_STREAM_BYTES + 1)
    except OSError as e:
        raise StylecodecError(f"cannot read {path}: {e.strerror or e}") from None


def write_atomic(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then rename it onto ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())           # mkstemp makes 0600; give the usual permissions
    except OSError as e:
        raise StylecodecError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise StylecodecError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str, data: bytes) -> None:
    def _w(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
    write_atomic(path, _w)
