"""Shared fixtures: the ../shared data folder (skip when absent) and a private asset cache."""
from __future__ import annotations

from pathlib import Path

import pytest

from stylecodec.paths import shared_dir as _shared_path
from stylecodec.threads import apply_thread_choice

apply_thread_choice()       # torch threads = idle cores, as the CLI does; before the test modules import torch


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder; tests needing it skip with a reason when it is absent."""
    root = _shared_path()
    if not (root / "data").is_dir():
        pytest.skip(f"needs the shared data folder ({root}) which is absent; set STYLECODEC_SHARED")
    return root


@pytest.fixture(scope="session")
def lfw_dir(shared_dir: Path) -> Path:
    p = shared_dir / "data" / "lfw"
    if not p.is_dir():
        pytest.skip(f"needs {p}")
    return p


@pytest.fixture(scope="session")
def utkface_dir(shared_dir: Path) -> Path:
    p = shared_dir / "data" / "utkface"
    if not p.is_dir():
        pytest.skip(f"needs {p}")
    return p


@pytest.fixture
def sigint_default():
    """SIGINT's default handler for the test, restored after: a background job starts with SIG_IGN, and the
    trainers' signal tests check that the handler they found is back."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
