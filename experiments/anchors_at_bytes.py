"""The anchors of faces_heldout.py (linear prior at no more bytes, VVC's floor) at the byte counts of columns of
its earlier runs, on the same faces: a same-face comparison without coding the models again.

    OMP_NUM_THREADS=1 python experiments/anchors_at_bytes.py \\
        --bytes runs/heldout_1000_g2qf168k.jsonl "g2qf168k all" \\
        --bytes runs/heldout_1000_g2qf168k_s40.jsonl "g2qf168k+s40 all" --vvc \\
        --out runs/heldout_1000_anchors_g2qf168k.jsonl

Per face of the first file and ``--bytes`` pair: the linear prior's largest rate point whose file is not above
that column's bytes for the face (column "linear prior (<= COLUMN)"); with ``--vvc`` also VVC at QP 63. Rows in
faces_heldout.py's format (resumable, appended), so ``merge_faces.py`` and ``paired_faces.py`` read them.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from faces_heldout import SKIP, append_row, read_rows, summarise
from paired_faces import column

from stylecodec.anchors import get_anchor
from stylecodec.anchors.linear import LinearAnchor
from stylecodec.data import default_data_root
from stylecodec.eval.face_grid import linear_within
from stylecodec.eval.measure import Measurer
from stylecodec.eval.settings import VVC_FLOOR_QP
from stylecodec.images import load_rgb


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bytes", nargs=2, action="append", required=True, metavar=("FILE", "COLUMN"),
                   help="a faces_heldout.py --out file and one of its columns: the byte limit per face (repeatable)")
    p.add_argument("--vvc", action="store_true", help=f"also VVC at QP {VVC_FLOOR_QP} (the floor)")
    p.add_argument("--val-count", type=int, default=1000)
    p.add_argument("--out", required=True, help="JSON-lines file (appended; a rerun resumes)")
    a = p.parse_args()
    if len({name for _, name in a.bytes}) < len(a.bytes):
        p.error("--bytes: each COLUMN once (it names the anchor's column)")
    limits = {name: column(path, name) for path, name in a.bytes}
    faces = [f for f in next(iter(limits.values())) if all(f in rows for rows in limits.values())]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wanted = [f"linear prior (<= {col})" for col in limits] + ([f"VVC QP {VVC_FLOOR_QP} (floor)"] if a.vvc else [])
    rows = read_rows(out)
    lacking = sorted({c for r in rows for c in wanted if c not in r["columns"]})
    if lacking:
        p.error(f"{out} holds rows without {', '.join(lacking)} (written with other --bytes/--vvc): use another --out")
    done = {r["face"] for r in rows}
    root = default_data_root()
    linear = LinearAnchor(data=root, val_count=a.val_count)
    vvc = get_anchor("vvc") if a.vvc else None
    measurer = Measurer(SKIP)
    t0 = time.time()
    for i, name in enumerate(faces):
        if name in done:
            continue
        face = load_rgb(root / name, 256)
        cells = []
        for col, rows in limits.items():
            enc, rec, _ = linear_within(linear, face, int(rows[name]["bytes"]))
            cells.append((f"linear prior (<= {col})", rec, enc.nbytes))
        if vvc is not None:
            enc, rec = vvc.roundtrip(face, VVC_FLOOR_QP)
            cells.append((f"VVC QP {VVC_FLOOR_QP} (floor)", rec, enc.nbytes))
        append_row(out, measurer, name, face, cells)
        print(f"[{i + 1}/{len(faces)}] {name} {time.time() - t0:.0f} s", flush=True)
    chosen = set(faces)
    text = summarise([r for r in read_rows(out) if r["face"] in chosen], [a.out])
    out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
