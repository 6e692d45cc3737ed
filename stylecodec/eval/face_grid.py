"""The face grid of a report (issue 17): faces decoded by stylecodec's layer prefixes next to the linear
prior and VVC, each labelled with its bytes and SFace identity.

Columns, left to right:

1. original (the aligned face, R x R);
2. stylecodec decoded from the basic layer alone, 3. basic + middle, 4. all layers: one file per face at
   the model's default setting (``Codec.compress(face, aligned=True)`` without rate options), its prefixes
   cut with ``extract``; the bytes are each prefix's file;
5. the linear prior (:class:`~stylecodec.anchors.linear.LinearAnchor`, eigenfaces) at its largest rate
   point whose file is not above the stylecodec file's bytes (``*``: none is, its smallest); blank when
   its training faces are not there;
6. VVC's floor (QP 63, the harness's VVC anchor);
7. VVC at matched identity: the smallest VVC stream (QPs searched from 63 down) whose SFace identity
   cosine to the original reaches that of the stylecodec all-layer face (``*``: not reached by QP 0).

Metrics are the harness's (:class:`~stylecodec.eval.measure.Measurer`): PSNR, LPIPS-Alex and SFace
identity cosine against the original. :func:`face_grid` returns the image and one record per face and
column; ``face_grid.json`` in a run folder (written by ``stylecodec demo``) puts the grid in the report.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..bitstream import extract
from .common import largest_within
from .measure import Measurer, Reference
from .settings import VVC_FLOOR_QP

__all__ = ["COLUMNS", "face_grid", "matched_vvc", "linear_within", "column_means", "grid_markdown"]

COLUMNS = ("original", "basic", "+middle", "all layers", "linear prior", "VVC floor", "VVC matched ID")
METRICS = ("psnr", "lpips_alex", "id_sface")
_SKIP = ("ms_ssim", "lpips_vgg", "facenet", "dlib", "dlib_resnet")
_LABEL = 18                                   # pixels of text under each cell


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


def linear_within(linear, face: np.ndarray, max_bytes: int) -> tuple:
    """(encoded, decoded, fits) of the linear prior's largest rate point whose file is not above ``max_bytes``
    (fits False: none is, its smallest)."""
    (enc, rec), fit = largest_within([linear.roundtrip(face, q) for q in range(len(linear.points))], max_bytes,
                                     lambda c: c[0].nbytes)
    return enc, rec, fit


def _cell(img: np.ndarray | None, size: int, text: str, font) -> Image.Image:
    out = Image.new("RGB", (size, size + _LABEL), "white")
    if img is not None:
        im = Image.fromarray(img)
        out.paste(im if im.size == (size, size) else im.resize((size, size), Image.LANCZOS), (0, 0))
    ImageDraw.Draw(out).text((3, size + 2), text, fill=(0, 0, 0), font=font)
    return out


def face_grid(codec, faces: Sequence[tuple[str, np.ndarray]], vvc, linear=None, cell: int = 128,
              log: Callable[[str], None] | None = None) -> tuple[Image.Image, list[dict]]:
    """Grid of ``faces`` ((name, uint8 [R, R, 3] aligned face), R = the codec's resolution) x :data:`COLUMNS`.
    ``vvc``: the VVC anchor; ``linear``: a prepared linear-prior anchor or None. Returns (image, records:
    {"face", "column", "bytes", "note", "psnr", "lpips_alex", "id_sface"} per face and coded column)."""
    measurer, judge = Measurer(_SKIP), Measurer(_SKIP + ("psnr", "lpips_alex"))
    font = ImageFont.load_default(size=13)
    rows, records = [], []
    for name, face in faces:
        assert face.shape == (codec.resolution, codec.resolution, 3) and face.dtype == np.uint8, face.shape
        ref = Reference(face)
        data = codec.compress(face, aligned=True)
        cells = [(face, 0, "")]
        for k in (1, 2, 3):
            part = data if k == 3 else extract(data, k)
            cells.append((codec.decompress(part, k, output="array"), len(part), ""))
        if linear is not None:
            enc, rec, fit = linear_within(linear, face, len(data))
            k_lin, step = linear.points[enc.q]
            cells.append((rec, enc.nbytes, f"K={k_lin} step {step:g}" + ("" if fit else " *")))
        else:
            cells.append((None, 0, "no training faces"))
        enc, rec = vvc.roundtrip(face, VVC_FLOOR_QP)
        cells.append((rec, enc.nbytes, f"QP {VVC_FLOOR_QP}"))
        coded_cells = [c for c in cells[1:] if c[0] is not None]
        m = iter(measurer.measure(ref, [c[0] for c in coded_cells])[0])
        vals = [next(m) if c[0] is not None else {} for c in cells[1:]]
        target = vals[2]["id_sface"]
        qp, enc, rec, reached = matched_vvc(vvc, face, ref, target, judge)
        cells.append((rec, enc.nbytes, f"QP {qp}" + ("" if reached else " *")))
        vals += measurer.measure(ref, [rec])[0]
        row = []
        for col, (img, nbytes, note), v in zip(COLUMNS, cells, [{}] + vals):
            if col != "original" and img is not None:
                records.append({"face": name, "column": col, "bytes": nbytes, "note": note,
                                **{k: float(v[k]) for k in METRICS}})
            text = (col if col == "original" else note if img is None
                    else f"{nbytes} B  ID {v['id_sface']:.2f}")
            row.append(_cell(img, cell, text, font))
        rows.append(row)
        if log is not None:
            log(f"{name}: stylecodec {len(data)} B (SFace {target:.3f}); linear {cells[4][1]} B; "
                f"VVC floor {cells[5][1]} B; VVC matched {cells[6][1]} B ({cells[6][2]})")
    head, ch = 20, cell + _LABEL
    grid = Image.new("RGB", (cell * len(COLUMNS), head + ch * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for j, col in enumerate(COLUMNS):
        draw.text((j * cell + 3, 3), col, fill=(0, 0, 0), font=font)
    for i, row in enumerate(rows):
        for j, c in enumerate(row):
            grid.paste(c, (j * cell, head + i * ch))
    return grid, records


def column_means(records: list[dict]) -> list[dict]:
    """Mean bytes and metrics per column, in :data:`COLUMNS` order, over the faces that column has."""
    out = []
    for col in COLUMNS[1:]:
        rs = [r for r in records if r["column"] == col]
        if rs:
            out.append({"column": col, "n": len(rs), "bytes": float(np.mean([r["bytes"] for r in rs])),
                        **{k: float(np.mean([r[k] for r in rs])) for k in METRICS}})
    return out


def grid_markdown(records: list[dict], png: str) -> str:
    """The report section: the grid image and its column means."""
    lines = [f"![decoded faces: {', '.join(COLUMNS)}]({png})", "",
             "| column | faces | bytes | PSNR dB | LPIPS-Alex | SFace ID |", "|---|---|---|---|---|---|"]
    for m in column_means(records):
        lines.append(f"| {m['column']} | {m['n']} | {m['bytes']:.1f} | {m['psnr']:.2f} | {m['lpips_alex']:.3f} | "
                     f"{m['id_sface']:.3f} |" if all(math.isfinite(m[k]) for k in METRICS) else
                     f"| {m['column']} | {m['n']} | {m['bytes']:.1f} | - | - | - |")
    return "\n".join(lines)
