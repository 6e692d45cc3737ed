"""How many CPU threads torch runs on: the cores that no other process keeps busy.

Measured (``python experiments/bench_threads.py``, ``experiments/results/restructure/threads.txt``): on
this project's 2-core machine with other jobs running (1-minute load 3.3), compress + decompress of
the sample face took 0.141 s with one torch thread and 3.208 s with two: two OpenMP threads that
wait on each other at every parallel region, one of them on a busy core, are 23x slower. On an
idle 2-core machine two threads help (the model card's speed figures at 2 threads). So the choice
follows the load: the CPUs this process may run on minus the 1-minute load average (rounded), at
least 1. An ``OMP_NUM_THREADS`` already set (or a command's ``--threads``) wins.

The CLI (:func:`stylecodec.cli.main`) and the test suite (``tests/conftest.py``) apply it before
torch is imported, so ``scripts/main.sh``, ``scripts/test.sh`` and every command need no setting.
"""
from __future__ import annotations

import os
import sys

__all__ = ["available_cpus", "idle_cpus", "choose_threads", "apply_thread_choice"]


def available_cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def idle_cpus() -> int:
    """Available CPUs minus the 1-minute load average (rounded), at least 1."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):          # not on every platform
        load = 0.0
    return max(1, available_cpus() - int(round(load)))


def choose_threads() -> int:
    """``OMP_NUM_THREADS`` when set (a positive integer), else :func:`idle_cpus`."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    return int(given) if given.isdigit() and int(given) > 0 else idle_cpus()


def apply_thread_choice() -> int:
    """Set ``OMP_NUM_THREADS`` to :func:`choose_threads` for torch to read when it is first imported
    (and set torch's threads if it already is); returns the number."""
    n = choose_threads()
    os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n
