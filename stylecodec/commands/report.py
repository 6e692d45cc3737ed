"""``stylecodec report RUN_DIR``: (re)write summary.md, the RD plots, index.html and tb/ of a run."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import StylecodecError

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_DIR", help="run folder of stylecodec eval")
    parser.add_argument("--headline-quality", type=int, metavar="Q", help="stylecodec quality of the headline")
    parser.add_argument("--check", action="store_true",
                        help="only check the run's index.html (tags balanced, every referenced file present); "
                             "exit 1 on a problem")


def run(args: argparse.Namespace) -> int:
    from ..eval.html import check_index
    from ..eval.report import write_report

    if args.check:
        index = Path(args.run) / "index.html"
        if not index.is_file():
            raise StylecodecError(f"{index} does not exist (run stylecodec report {args.run} first)")
        problems, n = check_index(index)
        if problems:
            raise StylecodecError(f"{index}: {len(problems)} problems: " + "; ".join(problems[:5]))
        print(f"{index}: valid (tags balanced, {n} local references, all present)")
        return 0
    if not any(Path(args.run).glob("results*.csv")):
        raise StylecodecError(f"{args.run} holds no results*.csv (run stylecodec eval first)")
    path, head = write_report(args.run, args.headline_quality)
    print(f"report: {path}\n\n{head}")
    return 0
