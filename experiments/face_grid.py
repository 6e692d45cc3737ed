"""The comparison grid of issue 17: held-out faces decoded by stylecodec's layer prefixes, the linear
prior and VVC, each labelled with its bytes.

    OMP_NUM_THREADS=1 python experiments/face_grid.py --model PATH --out FILE.png [--faces 8] [--cell 128]

Faces: the first ``--faces`` held-out UTKFace faces (files sorted by name, the last ``--val-count``
= 1,000 are held out), in the training view at the model's resolution (centre square, Lanczos;
256² for the default models). Columns, left to right:

1. original;
2. stylecodec decoded from the basic layer alone, 3. basic + middle, 4. all layers: one file per
   face at the model's default setting (``Codec.compress(face, aligned=True)`` without rate
   options), its prefixes cut with ``extract``; the bytes are each prefix's file;
5. the linear prior (:class:`stylecodec.anchors.linear.LinearAnchor`, eigenfaces) at its largest
   rate point whose file is not above the stylecodec file's bytes (``*``: none is, its smallest);
6. VVC's floor (QP 63, the harness's VVC anchor);
7. VVC at matched identity: the smallest VVC stream (QPs searched from 63 down) whose SFace identity
   cosine to the original reaches that of the stylecodec all-layer face (``*``: not reached by QP 0).

Metrics are the harness's (:class:`stylecodec.eval.measure.Measurer`): PSNR, LPIPS-Alex and SFace
identity cosine against the original. Prints a table per face and column and the column means.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from stylecodec.anchors import get_anchor
from stylecodec.anchors.linear import LinearAnchor
from stylecodec.bitstream import extract
from stylecodec.codec import Codec
from stylecodec.data import default_data_root, list_images, split_files
from stylecodec.eval.measure import Measurer, Reference
from stylecodec.eval.settings import VVC_FLOOR_QP
from stylecodec.files import write_atomic
from stylecodec.images import load_rgb

COLUMNS = ("original", "basic", "+middle", "all layers", "linear prior", "VVC floor", "VVC matched ID")
METRICS = ("psnr", "lpips_alex", "id_sface")
SKIP = ("ms_ssim", "lpips_vgg", "facenet", "dlib")


def matched_vvc(vvc, face: np.ndarray, ref: Reference, target: float, judge: Measurer) -> tuple:
    """(qp, encoded, decoded, reached) of the smallest VVC stream whose SFace cosine >= ``target``:
    QPs from the floor down in steps of 2, then the QP just above the first hit (a smaller stream)."""
    tried: dict[int, tuple] = {}

    def attempt(qp: int):
        if qp not in tried:
            enc, rec = vvc.roundtrip(face, qp)
            tried[qp] = (enc, rec, judge.measure(ref, [rec])[0][0]["id_sface"])
        return tried[qp]

    for qp in range(VVC_FLOOR_QP, -1, -2):
        if attempt(qp)[2] >= target:
            if qp < VVC_FLOOR_QP and attempt(qp + 1)[2] >= target:
                qp += 1
            hits = [q for q, t in tried.items() if t[2] >= target]
            best = min(hits, key=lambda q: tried[q][0].nbytes)
            return best, tried[best][0], tried[best][1], True
    qp = min(tried)
    return qp, tried[qp][0], tried[qp][1], False


def label_cell(img: np.ndarray, cell: int, text: str, font) -> Image.Image:
    im = Image.fromarray(img).resize((cell, cell), Image.LANCZOS) if img.shape[0] != cell else Image.fromarray(img)
    out = Image.new("RGB", (cell, cell + 18), "white")
    out.paste(im, (0, 0))
    ImageDraw.Draw(out).text((3, cell + 2), text, fill=(0, 0, 0), font=font)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="codec model (name or path)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--faces", type=int, default=8, help="held-out faces, from the first (default 8)")
    p.add_argument("--data", default=None, help="UTKFace folder (default: ../shared/data/utkface)")
    p.add_argument("--val-count", type=int, default=1000, help="held-out files at the end of the sorted list")
    p.add_argument("--cell", type=int, default=128, help="pixels per face in the grid (default 128)")
    a = p.parse_args()

    t0 = time.time()
    root = Path(a.data) if a.data else default_data_root()
    names = split_files(list_images(root), "val", a.val_count)[:a.faces]
    codec = Codec.from_pretrained(a.model)
    r = codec.resolution
    linear, vvc = LinearAnchor(data=root, val_count=a.val_count), get_anchor("vvc")
    measurer, judge = Measurer(SKIP), Measurer(SKIP + ("psnr", "lpips_alex"))
    font = ImageFont.load_default(size=13)
    rows, table = [], []
    for name in names:
        face = load_rgb(root / name, r)
        ref = Reference(face)
        data = codec.compress(face, aligned=True)
        cells = [(face, 0, "")]
        for k in (1, 2, 3):
            part = data if k == 3 else extract(data, k)
            cells.append((codec.decompress(part, k, output="array"), len(part), ""))
        coded = [linear.roundtrip(face, q) for q in range(len(linear.points))]
        fit = [c for c in coded if c[0].nbytes <= len(data)]
        enc, rec = max(fit, key=lambda c: c[0].nbytes) if fit else coded[0]
        k_lin, step = linear.points[enc.q]
        cells.append((rec, enc.nbytes, f"K={k_lin} step {step:g}" + ("" if fit else " *")))
        enc, rec = vvc.roundtrip(face, VVC_FLOOR_QP)
        cells.append((rec, enc.nbytes, f"QP {VVC_FLOOR_QP}"))
        m = measurer.measure(ref, [c[0] for c in cells[1:6]])[0]
        target = m[2]["id_sface"]
        qp, enc, rec, reached = matched_vvc(vvc, face, ref, target, judge)
        cells.append((rec, enc.nbytes, f"QP {qp}" + ("" if reached else " *")))
        m += measurer.measure(ref, [rec])[0]
        row = []
        for col, (img, nbytes, note), vals in zip(COLUMNS, cells, [{}] + m):
            table.append({"face": name, "column": col, "bytes": nbytes, "note": note, **vals})
            text = "original" if col == "original" else f"{nbytes} B  ID {vals['id_sface']:.2f}"
            row.append(label_cell(img, a.cell, text, font))
        rows.append(row)
        print(f"{name}: stylecodec {len(data)} B (SFace {target:.3f}); linear {cells[4][1]} B; "
              f"VVC floor {cells[5][1]} B; VVC matched {cells[6][1]} B ({cells[6][2]})", flush=True)

    cw, ch, head = a.cell, a.cell + 18, 20
    grid = Image.new("RGB", (cw * len(COLUMNS), head + ch * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for j, col in enumerate(COLUMNS):
        draw.text((j * cw + 3, 3), col, fill=(0, 0, 0), font=font)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            grid.paste(cell, (j * cw, head + i * ch))
    write_atomic(a.out, lambda tmp: grid.save(tmp, format="PNG", optimize=True), make_parents=True)

    print(f"\n{'face':<36} {'column':<15} {'bytes':>5} {'PSNR':>6} {'LPIPS-A':>7} {'SFace':>6}  note")
    for t in table:
        if t["column"] == "original":
            continue
        print(f"{t['face']:<36} {t['column']:<15} {t['bytes']:>5} {t['psnr']:6.2f} {t['lpips_alex']:7.3f} "
              f"{t['id_sface']:6.3f}  {t['note']}")
    print(f"\nmeans over {len(rows)} faces:")
    for col in COLUMNS[1:]:
        ts = [t for t in table if t["column"] == col]
        print(f"  {col:<15} {np.mean([t['bytes'] for t in ts]):6.1f} B  PSNR {np.mean([t['psnr'] for t in ts]):5.2f}  "
              f"LPIPS-Alex {np.mean([t['lpips_alex'] for t in ts]):.3f}  SFace {np.mean([t['id_sface'] for t in ts]):.3f}")
    print(f"\n{a.out}: {len(rows)} faces x {len(COLUMNS)} columns (model {a.model}, {r}², "
          f"{time.time() - t0:.0f} s); * = no linear point within the stylecodec bytes / identity not reached by VVC")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
