"""``stylecodec report RUN_DIR``: (re)write summary.md, the RD plots, index.html and tb/ of a run."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_DIR", help="run folder of stylecodec eval")
    parser.add_argument("--headline-quality", type=int, metavar="Q", help="stylecodec quality of the headline")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import StylecodecError
    from ..eval.report import write_report

    if not any(Path(args.run).glob("results*.csv")):
        raise StylecodecError(f"{args.run} holds no results*.csv (run stylecodec eval first)")
    path, head = write_report(args.run, args.headline_quality)
    print(f"report: {path}\n\n{head}")
    return 0
