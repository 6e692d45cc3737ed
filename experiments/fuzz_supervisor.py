"""Run fuzz cases in a watched worker process (shared by fuzz_bitstream.py and fuzz_codec.py).

The worker prints ``ready`` once set up, then one line ``case KIND OUTCOME MS`` per case.
A silent worker (past ``timeout`` s) counts as a timeout on the current case and a worker
that exits mid-run as a crash; either way a fresh worker continues with the next case.
"""
from __future__ import annotations

import collections
import selectors
import subprocess
from typing import Callable


def supervise(worker_cmd: Callable[[int], list[str]], cases: int, timeout: float,
              start_timeout: float = 600) -> tuple[collections.Counter, dict, list[float]]:
    """Returns (outcome counts, {kind: outcome counts}, per-case milliseconds)."""
    outcomes: collections.Counter = collections.Counter()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    times: list[float] = []
    case = 0
    while case < cases:
        proc = subprocess.Popen(worker_cmd(case), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, bufsize=1)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = False
        while case < cases:
            if not sel.select(timeout=timeout if ready else start_timeout):
                outcomes["timeout"] += 1
                by_kind["?"]["timeout"] += 1
                case += 1
                break
            line = proc.stdout.readline()
            if not line:                              # the worker died: a crash on this case
                outcomes["crash"] += 1
                by_kind["?"]["crash"] += 1
                case += 1
                break
            if line.startswith("ready"):
                ready = True
                continue
            _, kind, outcome, ms = line.split()
            outcomes[outcome] += 1
            by_kind[kind][outcome] += 1
            times.append(float(ms))
            case += 1
        proc.kill()
        proc.wait()
    return outcomes, by_kind, times
