"""Atomic file writes: every file the package writes goes to a temporary name beside its target and
is renamed onto it, so an interrupt or a full disk never leaves a half-written file behind.

``write_atomic(path, write)`` calls ``write(tmp)``; ``durable=True`` also fsyncs before the rename
(training checkpoints). OS errors become one-line :class:`~stylecodec.errors.StylecodecError`\\ s.
``file_lock(path)`` serialises processes that share a file (an advisory lock beside it).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import StylecodecError

__all__ = ["write_atomic", "write_bytes", "write_npz", "atomic_torch_save", "file_lock"]


def write_atomic(path: str | os.PathLike, write: Callable[[str], None], durable: bool = False,
                 make_parents: bool = False) -> None:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then rename it onto ``path``.
    ``durable``: fsync the file first. ``make_parents``: create missing folders."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        if make_parents:
            os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())           # mkstemp makes 0600; give the usual permissions
    except OSError as e:
        raise StylecodecError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
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


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` to ``path``, atomically."""
    def _w(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
    write_atomic(path, _w)


def write_npz(path: str | os.PathLike, arrays: dict) -> None:
    """``np.savez(**arrays)`` to ``path``, atomically (through a file object: given a name,
    np.savez would append ".npz" to the temporary one)."""
    import numpy as np      # here, like torch below: the stream commands write through this module without them

    def _w(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    write_atomic(path, _w)


def atomic_torch_save(obj: Any, path: str | os.PathLike, durable: bool = False) -> None:
    """``torch.save(obj)`` to ``path`` (folders created), atomically; ``durable``: fsync first."""
    import torch            # here: see write_npz

    write_atomic(path, lambda tmp: torch.save(obj, tmp), durable=durable, make_parents=True)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``<path>.lock`` for the block; the OS releases it when
    the process ends, however it ends. ``wait=False``: raise BlockingIOError at once when another
    process holds it. No-op where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl        # POSIX only
    except ImportError:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield
