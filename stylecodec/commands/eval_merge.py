"""``stylecodec eval-merge RUN_DIRS... --out RUN_DIR``: merge sharded evaluation runs and write the report."""
from __future__ import annotations

import argparse

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or one folder of shard files)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="merged run folder (may be one of the inputs)")
    parser.add_argument("--headline-quality", type=int, metavar="Q", help="stylecodec quality of the headline")
    parser.add_argument("--no-report", action="store_true", help="only merge the results")


def run(args: argparse.Namespace) -> int:
    from ..eval.report import write_report
    from ..eval.results import merge_runs

    n = merge_runs(args.runs, args.out)
    print(f"merged {len(args.runs)} run folder(s): {n} rows in {args.out}/results.csv")
    if not args.no_report:
        path, head = write_report(args.out, args.headline_quality)
        print(f"report: {path}\n\n{head}")
    return 0
