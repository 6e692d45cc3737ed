"""Import every module of the package in a fresh interpreter of its own: each must import on its own
(no import cycle that depends on import order, no missing dependency).

    python experiments/import_each_module.py

Prints one line per failing module and a count; exit 1 if any fails.
"""
from __future__ import annotations

import pkgutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import stylecodec  # noqa: E402


def main() -> int:
    names = ["stylecodec"] + [m.name for m in pkgutil.walk_packages(stylecodec.__path__, "stylecodec.")]
    t0, failed = time.perf_counter(), []
    for name in names:
        r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True,
                           cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
        if r.returncode:
            failed.append(name)
            print(f"FAILED {name}: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    print(f"{len(names)} modules, each imported alone in a fresh interpreter: {len(names) - len(failed)} ok, "
          f"{len(failed)} failed ({time.perf_counter() - t0:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
