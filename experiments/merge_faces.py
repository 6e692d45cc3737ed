"""One faces_heldout.py table from several of its JSON-lines files, on the faces they all hold.

    python experiments/merge_faces.py runs/heldout_1000_g2qf168k.jsonl runs/heldout_500even_g2qf168k_s40.jsonl \\
        --out experiments/results/faces/heldout_500even_g2qf168k_s40.md

Columns of every file side by side (FD-SFace is then computed on the same faces for each; it depends on
the number of faces, so only figures from one table compare). ``--drop COLUMN`` leaves a column out and
``--rename OLD NEW`` renames one, e.g. an anchor measured at another model's bytes where those bytes are the
same face by face (check that first: the name says whose bytes bound it).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from faces_heldout import summarise


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="faces_heldout.py --out files")
    p.add_argument("--out", default=None, help="markdown file to write (default: print only)")
    p.add_argument("--drop", action="append", default=[], metavar="COLUMN", help="leave this column out (repeatable)")
    p.add_argument("--rename", nargs=2, action="append", default=[], metavar=("OLD", "NEW"),
                   help="rename a column (repeatable)")
    a = p.parse_args()
    rename = dict(a.rename)
    tables = [{r["face"]: r for r in map(json.loads, Path(f).read_text().splitlines())} for f in a.files]
    present = {c for t in tables for r in t.values() for c in r["columns"]}
    missing = sorted((set(a.drop) | set(rename)) - present)
    if missing:
        p.error(f"no such column: {', '.join(missing)}")
    faces = [f for f in tables[-1] if all(f in t for t in tables)]
    rows = [{**tables[0][f], "columns": {rename.get(c, c): v for t in tables for c, v in t[f]["columns"].items()
                                         if c not in a.drop}} for f in faces]
    text = summarise(rows, a.files)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
