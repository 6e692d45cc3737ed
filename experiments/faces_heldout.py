"""Issue 17's face table: decoded faces of held-out UTKFace against the linear prior and VVC's floor.

    OMP_NUM_THREADS=1 python experiments/faces_heldout.py --models pretrained/default.pt[,OTHER.pt] \\
        --limit 1000 --out experiments/results/faces/heldout.jsonl [--shard 0/2]

Faces: the first ``--limit`` of the 1,000 held-out UTKFace files (sorted by name, the last 1,000 are held
out), in the training view at 256² (``stylecodec.images.load_rgb``). Per face and model: one file at the
model's default setting (``Codec.compress(face, aligned=True)``: every file <= 81 B, basic <= 24 B; coded once
for models of one stream key, e.g. ``default`` and ``default-linear``), its
prefixes cut with ``extract`` and decoded (basic, +middle, all). Anchors on the same face: the linear prior
(:class:`stylecodec.anchors.linear.LinearAnchor`, eigenfaces coded with the project's coder) at its largest
rate point whose file is not above the first model's file (or its smallest), and VVC's floor (QP 63).
``--no-anchors`` leaves both out (a new decoder compared with an earlier run's file on the same faces).

Metrics (:class:`stylecodec.eval.measure.Measurer`): PSNR, LPIPS-Alex, SFace identity cosine (SFace is
also the machine-first basic layer's teacher, so it is not independent for stylecodec) and dlib's
ResNet distance (``dist_dlib``: no stylecodec part trains with it; the same person below 0.6). FD-SFace:
Fréchet distance between Gaussian fits of SFace embeddings of the decoded faces and of the originals
(needs >= 50 faces). One JSON line per face is appended to ``--out`` (a rerun skips the faces there), and
the summary (means per column, FD-SFace) is printed and written next to it as ``.md``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from stylecodec.anchors import get_anchor
from stylecodec.anchors.linear import LinearAnchor
from stylecodec.bitstream import extract
from stylecodec.codec import Codec
from stylecodec.data import default_data_root, list_images, split_files
from stylecodec.eval.face_grid import linear_within
from stylecodec.eval.measure import Measurer, Reference
from stylecodec.eval.settings import VVC_FLOOR_QP
from stylecodec.images import load_rgb
from stylecodec.metrics.frechet import frechet_distance

from search_settings import parse_setting

SKIP = ("ms_ssim", "lpips_vgg", "facenet", "dlib")
METRICS = ("psnr", "lpips_alex", "id_sface", "dist_dlib")
PREFIXES = ("basic", "+middle", "all")


def code_face(face: np.ndarray, codecs: dict, linear, vvc) -> list[tuple[str, np.ndarray, int]]:
    """[(column, decoded uint8, bytes)] for one face."""
    out = []
    first = None
    streams: dict[tuple, bytes] = {}             # models with one stream key write the same file
    for tag, codec in codecs.items():
        key = (codec.key.digest, codec.search and codec.search.config)   # a search writes other files
        if key not in streams:
            streams[key] = codec.compress(face, aligned=True)
        data = streams[key]
        first = first or len(data)
        for k, prefix in zip((1, 2, 3), PREFIXES):
            part = data if k == 3 else extract(data, k)
            out.append((f"{tag} {prefix}", codec.decompress(part, k, output="array"), len(part)))
    if linear is not None:
        enc, rec, _ = linear_within(linear, face, first)
        out.append(("linear prior (<= file)", rec, enc.nbytes))
    if vvc is not None:
        enc, rec = vvc.roundtrip(face, VVC_FLOOR_QP)
        out.append((f"VVC QP {VVC_FLOOR_QP} (floor)", rec, enc.nbytes))
    return out


def read_rows(out: Path) -> list[dict]:
    """The rows of a JSON-lines file written by :func:`append_row` ([] when absent). A last line cut by an
    interrupted run is dropped from the file (its face is coded again); damage anywhere else is an error."""
    if not out.is_file():
        return []
    lines = out.read_text().splitlines(keepends=True)
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise SystemExit(f"{out}: line {i + 1} is not JSON (only the last line may be cut); fix or delete the file")
            print(f"{out}: dropping the cut last line (an interrupted run); its face is coded again", flush=True)
            out.write_text("".join(lines[:-1]))
    return rows


def append_row(out: Path, measurer: Measurer, name: str, face: np.ndarray, cells: list) -> None:
    """Measure ``cells`` ([(column, decoded uint8, bytes)]) against ``face`` and append the JSON line to ``out``."""
    ref = Reference(face)
    vals, emb = measurer.measure(ref, [c[1] for c in cells])
    row = {"face": name, "emb_ref": measurer.ref_embedding(ref).tolist(),
           "columns": {c[0]: {"bytes": c[2], **{m: v[m] for m in METRICS}, "emb": e.tolist()}
                       for c, v, e in zip(cells, vals, emb)}}
    with open(out, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def summarise(rows: list[dict], models: list[str]) -> str:
    cols = list(rows[0]["columns"])
    lines = [f"{len(rows)} held-out UTKFace faces (models: {', '.join(models)})", "",
             "| column | bytes | PSNR dB | LPIPS-Alex | SFace cos | dlib dist | FD-SFace |", "|---|---|---|---|---|---|---|"]
    ref = np.array([r["emb_ref"] for r in rows])
    for c in cols:
        vals = {m: np.mean([r["columns"][c][m] for r in rows]) for m in METRICS + ("bytes",)}
        fd = frechet_distance(np.array([r["columns"][c]["emb"] for r in rows]), ref, "SFace").value \
            if len(rows) >= 50 else float("nan")
        lines.append(f"| {c} | {vals['bytes']:.1f} | {vals['psnr']:.2f} | {vals['lpips_alex']:.3f} | "
                     f"{vals['id_sface']:.3f} | {vals['dist_dlib']:.3f} | {fd:.3f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="pretrained/default.pt", help="comma list of codec models (names or paths)")
    p.add_argument("--tags", default=None, help="comma list of column names for the models (default: file stems)")
    p.add_argument("--limit", type=int, default=200, help="first N held-out faces (default 200)")
    p.add_argument("--val-count", type=int, default=1000)
    p.add_argument("--out", required=True, help="JSON-lines file (appended; a rerun resumes)")
    p.add_argument("--no-anchors", action="store_true",
                   help="models only (e.g. a new refiner snapshot, compared face by face with an earlier file's rows)")
    p.add_argument("--search-steps", type=int, default=0,
                   help="encoder-side search of the pixel latents, steps per face (stylecodec.latent_search; 0: off)")
    p.add_argument("--search-config", default="", metavar="K=V,...",
                   help="other SearchConfig fields of that search, e.g. w_mse=30,margin_bytes=81 (default: none)")
    p.add_argument("--shard", default="0/1", help="K/N: code only faces i with i %% N == K (one process per core, "
                   "each with its own --out; concatenate the files and rerun without --shard for the summary)")
    a = p.parse_args()
    models = a.models.split(",")
    tags = a.tags.split(",") if a.tags else [Path(m).stem for m in models]
    root = default_data_root()
    names = split_files(list_images(root), "val", a.val_count)[:a.limit]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {r["face"] for r in read_rows(out)}
    k, n = (int(v) for v in a.shard.split("/"))
    if not 0 <= k < n:
        p.error(f"--shard {a.shard}: need 0 <= K < N")
    config = parse_setting(a.search_config)
    if config and not a.search_steps:
        p.error("--search-config needs --search-steps N")
    codecs = {t: Codec.from_pretrained(m).set_search(a.search_steps, **config) for t, m in zip(tags, models)}
    linear, vvc = (None, None) if a.no_anchors else (LinearAnchor(data=root, val_count=a.val_count), get_anchor("vvc"))
    measurer = Measurer(SKIP)
    t0 = time.time()
    for i, name in enumerate(names):
        if name in done or i % n != k:
            continue
        face = load_rgb(root / name, 256)
        append_row(out, measurer, name, face, code_face(face, codecs, linear, vvc))
        print(f"[{i + 1}/{len(names)}] {name} {time.time() - t0:.0f} s", flush=True)
    shard = set(names[k::n])
    rows = [r for r in read_rows(out) if r["face"] in shard]
    text = summarise(rows, models)
    out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
