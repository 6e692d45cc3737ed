"""`stylecodec assets list|fetch [NAME ...]`: the third-party weights (DESIGN.md §4)."""
from __future__ import annotations

import argparse
import time

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "fetch"], help="list the assets or fetch them")
    p.add_argument("names", nargs="*", help="asset names (default: all)")


def run(args: argparse.Namespace) -> int:
    from ..assets.fetch import ASSETS, cache_dir, fetch_all

    if args.action == "list":
        print(f"cache: {cache_dir()}")
        for name, target in ASSETS.items():
            print(f"  {name:<15} {target}")
        return 0

    for name in args.names or list(ASSETS):
        t0 = time.perf_counter()
        paths = fetch_all([name])[name]
        print(f"  {name:<15} ok ({time.perf_counter() - t0:.1f} s)  " + ", ".join(str(p) for p in paths))
    return 0
