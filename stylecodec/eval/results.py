"""The results table: one row per (image, codec, setting), stored as CSV in a run folder.

A run folder holds ``results.csv`` (unsharded) or ``results.shard-k-of-N.csv`` files (one per
shard, so many machines can share a folder); readers take the union of all ``results*.csv``.
Files are rewritten atomically after each image, so an interrupted run leaves whole rows.

Columns (empty = not measured):

- ``codec``: the curve, e.g. ``stylecodec-basic`` / ``-middle`` / ``-all`` (layers received),
  ``vvc``, ``vvc_down2`` (downscale x2 -> VVC -> upscale), ``hevc``, ``av1``, ``jxl``, ``jpeg``.
- ``setting``: ``q3`` (stylecodec quality index), ``qp37`` / ``crf40`` / ``distance4`` / ``quality10``
  (anchors), or ``bpp<=0.01`` (``point=target``: per image the highest quality whose whole
  file fits the rate; ``q`` says which). ``family``: ``stylecodec`` or the base anchor.
- ``bytes`` / ``bpp``: the whole file; ``payload_bytes`` / ``bpp_payload``: what a receiver needs
  per image when parameter sets are agreed in advance (VVC/HEVC slices, AV1 without sequence
  header; = bytes for stylecodec, JPEG, JPEG XL). bpp = 8 * bytes / (width * height).
- ``psnr`` (dB), ``ms_ssim``, ``lpips_alex``, ``lpips_vgg``: decoded vs the aligned original.
- ``id_facenet``, ``id_sface``: identity cosine (original, decoded). ``dist_dlib``: Euclidean distance
  of dlib ResNet descriptors (dlib's own metric; the same person below 0.6), the identity judge that
  no stylecodec model trains with.
- ``nme_dlib``: NME of dlib-68 on decoded vs dlib-68 on the original; ``nme_head``: NME of the
  base-layer analysis head (stylecodec-basic rows, models with heads) vs dlib on the original.
  ``face_ref`` / ``face_dec``: 1 when dlib detected a face (0: points fitted to the whole frame).
- ``encode_s``, ``decode_s``: wall seconds; ``error``: why a row has no measurements.
"""
from __future__ import annotations

import csv
import io
import math
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import StylecodecError
from ..files import write_atomic, write_npz
from .common import read_json, write_json

__all__ = ["COLUMNS", "NUMERIC", "results_path", "read_rows", "load_rows", "write_rows", "row_key", "merge_runs",
           "save_embeddings"]

COLUMNS = ["image", "codec", "setting", "family", "point", "layers", "q", "width", "height", "bytes", "bpp",
           "payload_bytes", "bpp_payload", "psnr", "ms_ssim", "lpips_alex", "lpips_vgg", "id_facenet",
           "id_sface", "dist_dlib", "nme_dlib", "nme_head", "face_ref", "face_dec", "encode_s", "decode_s", "error"]
TEXT = {"image", "codec", "setting", "family", "point", "error"}
NUMERIC = [c for c in COLUMNS if c not in TEXT]


def results_path(run_dir: str | os.PathLike, tag: str = "") -> Path:
    return Path(run_dir) / f"results{tag}.csv"


def row_key(row: dict) -> tuple[str, str, str]:
    return row["image"], row["codec"], row["setting"]


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def _parse(row: dict) -> dict:
    out = {}
    for c in COLUMNS:
        v = row.get(c) or ""
        if c in TEXT:
            out[c] = v
        else:
            try:
                out[c] = float(v) if v != "" else math.nan
            except ValueError:
                out[c] = math.nan
    return out


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of one CSV (numbers as float, missing as nan); [] when the file does not exist."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [_parse(r) for r in csv.DictReader(fh) if r.get("image")]
    except FileNotFoundError:
        return []


def load_rows(run_dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """The union of all ``results*.csv`` of one or more run folders; one row per key (a row
    without error wins over one with an error, else the first read)."""
    dirs = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
    best: dict[tuple, dict] = {}
    for d in dirs:
        for path in sorted(Path(d).glob("results*.csv")):
            for r in read_rows(path):
                k = row_key(r)
                if k not in best or (best[k]["error"] and not r["error"]):
                    best[k] = r
    return list(best.values())


def write_rows(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write rows (dicts with any subset of COLUMNS) to a CSV, atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _fmt(r.get(c)) for c in COLUMNS})
    text = buf.getvalue()

    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(os.fspath(path), _w)


def save_embeddings(path: str | os.PathLike, ref_emb, names: list[str], embs: list) -> None:
    """Add SFace embeddings of decoded rows (``names``: "codec|setting") to one image's
    ``emb/*.npz`` (arrays names, emb, ref: the original's embedding; ``ref_emb`` None keeps the
    stored one), atomically; rows already stored under the same name are replaced."""
    path = Path(path)
    table, ref = {}, np.zeros(0, np.float32)
    if path.is_file():
        with np.load(path) as old:
            table, ref = dict(zip(old["names"].tolist(), old["emb"])), old["ref"]
    table.update(zip(names, embs))
    if ref_emb is not None:
        ref = ref_emb
    path.parent.mkdir(parents=True, exist_ok=True)
    write_npz(path, {"names": np.array(list(table), dtype=str),
                     "emb": np.stack(list(table.values())).astype(np.float32), "ref": np.asarray(ref, np.float32)})


def run_weights(info: dict) -> str | None:
    """The weights a run's stylecodec rows were made with (run.json; older folders: the fingerprint)."""
    return info.get("weights", info.get("fingerprint"))


def stylecodec_weights(run_dir: str | os.PathLike) -> str | None:
    """The weights of the stylecodec rows in ``run_dir`` (None: no such rows, or not recorded)."""
    w = run_weights(read_json(Path(run_dir) / "run.json", {}) or {})
    return w if w and any(r["codec"].startswith("stylecodec") for r in load_rows([Path(run_dir)])) else None


def check_same_weights(run_dirs: Iterable[str | os.PathLike]) -> None:
    """StylecodecError when the stylecodec rows of these folders were made by different weights."""
    made_by: dict[str, Path] = {}
    for d in map(Path, run_dirs):
        w = stylecodec_weights(d)
        if w:
            made_by.setdefault(w, d)
    if len(made_by) > 1:
        raise StylecodecError("stylecodec rows of different models would be mixed: " +
                              ", ".join(f"{d} ({w})" for w, d in made_by.items()))


def merge_runs(run_dirs: Iterable[str | os.PathLike], out: str | os.PathLike) -> int:
    """Merge the rows, thumbnails, embeddings and run info of run folders into ``out``; returns
    the number of rows of ``out/results.csv`` (shard files already in ``out`` are folded in)."""
    out = Path(out)
    dirs = [Path(d) for d in run_dirs]
    check_same_weights([out, *dirs])
    rows = load_rows([out, *dirs])
    rows.sort(key=lambda r: (r["image"], r["family"], r["codec"], r["bpp"] if not math.isnan(r["bpp"]) else 0.0))
    write_rows(results_path(out), rows)
    for p in out.glob("results.shard-*.csv"):
        p.unlink()
    info = read_json(out / "run.json", {}) or {}
    for d in dirs:
        if d.resolve() == out.resolve():
            continue
        for sub in ("img", "emb"):
            for f in (d / sub).rglob("*") if (d / sub).is_dir() else ():
                dst = out / f.relative_to(d)
                if not f.is_file():
                    continue
                if not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, dst)
                elif sub == "emb" and f.suffix == ".npz":   # the same image coded in several runs: union
                    with np.load(f) as z:
                        names, embs, ref = z["names"].tolist(), list(z["emb"]), z["ref"]
                    save_embeddings(dst, ref if ref.size else None, names, embs)
        other = read_json(d / "run.json", {}) or {}
        info = {**other, **info}
        if (d / "lfw.json").is_file() and not (out / "lfw.json").exists():
            shutil.copy2(d / "lfw.json", out / "lfw.json")
    info.pop("shard", None)
    write_json(out / "run.json", info)
    return len(rows)
