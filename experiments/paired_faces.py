"""Paired differences of two face columns of faces_heldout.py runs, face by face, with standard errors.

Two models scored on the same held-out faces differ by far less than the faces differ from each other;
the mean of per-face differences (± its standard error) tells whether a change of recipe helped.

    python experiments/paired_faces.py runs/heldout_200_a.jsonl "a all" runs/heldout_200_b.jsonl "b all"

Prints, for PSNR, LPIPS-Alex, SFace cosine and dlib distance: mean(A - B) ± s.e. over the faces both hold.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

METRICS = ("psnr", "lpips_alex", "id_sface", "dist_dlib")


def column(path: str, name: str) -> dict[str, dict]:
    """face name -> the row of column ``name`` (e.g. "g150k all") in a faces_heldout.py JSON-lines file."""
    rows = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if name in r["columns"]:
                rows[r["face"]] = r["columns"][name]
    if not rows:
        raise SystemExit(f"{path}: no column {name!r}")
    return rows


def paired(a: dict[str, dict], b: dict[str, dict]) -> dict[str, tuple[float, float, int]]:
    """metric -> (mean of a - b, its standard error, faces) over the faces in both."""
    faces = sorted(set(a) & set(b))
    if len(faces) < 2:
        raise SystemExit(f"only {len(faces)} faces in common")
    out = {}
    for m in METRICS:
        d = np.array([a[f][m] - b[f][m] for f in faces], np.float64)
        out[m] = (float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(faces))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file_a")
    p.add_argument("column_a")
    p.add_argument("file_b")
    p.add_argument("column_b")
    args = p.parse_args(argv)
    res = paired(column(args.file_a, args.column_a), column(args.file_b, args.column_b))
    n = next(iter(res.values()))[2]
    print(f"{args.column_a} - {args.column_b}, {n} faces: " +
          "  ".join(f"{m} {mean:+.4f} ± {se:.4f}" for m, (mean, se, _) in res.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
