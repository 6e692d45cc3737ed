"""The report of a run folder: ``summary.md``, ``rd_*.png``, ``index.html`` and ``tb/``.

    summary_path, headline_md = write_report("runs/x")

summary.md: the headline table (stylecodec basic / +middle / all vs VVC at its floor, at its
lowest rate and at matched quality), BD-rate / BD-metric vs VVC for every metric (or "no
overlap" where the curves share no interval), LFW verification when measured, the Fréchet
distance in SFace space (FD-SFace; only with >= 50 images) and the mean of every metric per
codec x setting.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..metrics.frechet import frechet_distance
from .common import read_json, write_text
from .html import write_index
from .plots import rd_plots
from .results import load_rows, run_weights
from .tables import METRICS, bd_table, common_rows, fmt, headline, mean_table
from .tb import write_tensorboard

__all__ = ["write_report", "headline_markdown", "FD_MIN_IMAGES", "BD_MIN_IMAGES"]

FD_MIN_IMAGES = 50
# BD-rates are printed from this many faces on. Measured (experiments/bd_subsets.py on the 200 held-out
# faces of experiments/results/anchors_utk200, 20 random draws per size): stylecodec vs VVC on facenet
# identity -69.8 ± 5.7 % from 1 face (6 of 20 draws give no number), -73.0 ± 2.2 % from 10 (2 give none),
# -71.7 ± 2.8 % from 20 (1), -72.8 ± 0.8 % from 50; all 200: -72.7 %.
BD_MIN_IMAGES = 20
_COLS = [("bytes", "bytes"), ("bpp", "bpp"), ("bpp_payload", "bpp slice-only")] + \
        [(m, label) for m, label, _ in METRICS]


def _md_table(entries: list[dict], first: tuple[str, str], cols: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join([first[1], *(c for _, c in cols)]) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for e in entries:
        lines.append("| " + " | ".join([str(e[first[0]]), *(fmt(e.get(k)) for k, _ in cols)]) + " |")
    return "\n".join(lines)


def headline_columns(head: list[dict]) -> list[tuple[str, str]]:
    """(key, label) of the headline's metric columns; LFW accuracy (pixels, and the basic layer's identity
    head) only when some row has it."""
    return _COLS + [(k, label) for k, label in (("lfw_accuracy", "LFW acc."), ("lfw_head_accuracy", "LFW acc. (head)"))
                    if any(k in e for e in head)]


def headline_markdown(head: list[dict]) -> str:
    if not head:
        return "(no headline: the run has neither stylecodec rows nor VVC rows)"
    return _md_table(head, ("label", "codec"), headline_columns(head) + [("n", "images")])


def attach_lfw(head: list[dict], lfw: dict | None) -> str:
    """Copy LFW accuracies into the headline rows they measure (stylecodec basic at the same
    setting, VVC at the same QP); returns one sentence on what they are ('' without LFW)."""
    if not lfw:
        return ""
    by = {(e["codec"], e["setting"]): e for e in lfw["entries"]}
    for h in head:
        e = by.get((h["codec"], h["setting"]))
        if e is not None:
            h["lfw_accuracy"] = e["accuracy"]
        e = by.get(("stylecodec-head", h["setting"])) if h["codec"] == "stylecodec-basic" else None
        if e is not None:
            h["lfw_head_accuracy"] = e["accuracy"]
    ref = {e["codec"]: e["accuracy"] for e in lfw["entries"] if e["codec"] in ("original", "aligned")}
    if not any("lfw_accuracy" in h for h in head):
        return (f"LFW ({lfw['n_pairs']} pairs) was measured at other settings than the headline's; "
                "see the LFW section.")
    return (f"LFW acc.: 10-fold verification accuracy on {lfw['n_pairs']} LFW pairs (judge {lfw['judge']}), image_a "
            "decoded from that row's stream (stylecodec: the basic layer alone), image_b original; the same pairs "
            f"give {fmt(ref.get('original'))} with both originals and {fmt(ref.get('aligned'))} with image_a aligned "
            "but not coded. LFW acc. (head): both images coded, identity read from their basic layers by the "
            "model's analysis head, no pixels. Details in the LFW section.")


def _bd_markdown(bd: list[dict], n_images: int) -> str:
    if n_images < BD_MIN_IMAGES:
        return (f"Not computed: {n_images} image{'s' if n_images != 1 else ''} (BD-rates need >= {BD_MIN_IMAGES}: "
                "from fewer faces they swing by several points or find no overlap; see "
                "experiments/bd_subsets.py). The RD points are in \"Mean per codec x setting\" below and in "
                "the rd_*.png plots.")
    if not bd:
        return "No BD numbers: the run has no VVC curve (anchors must include vvc)."
    lines = ["| codec | metric | BD-rate vs VVC (whole files) | BD-metric vs VVC | BD-rate vs VVC slice-only |",
             "|---|---|---|---|---|"]
    for r in bd:
        cells = []
        for k in ("bd_rate", "bd_metric", "bd_rate_payload"):
            v = r[k]
            cells.append(v if isinstance(v, str) else (f"{v:+.1f} %" if k != "bd_metric" else f"{v:+.4g}"))
        lines.append(f"| {r['codec']} | {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _frechet(run_dir: Path, table: list[dict], n_images: int) -> str:
    if n_images < FD_MIN_IMAGES:
        return (f"Not computed: {n_images} images (FD-SFace needs >= {FD_MIN_IMAGES}; with fewer samples than "
                f"the 128 dimensions the estimate is dominated by bias).")

    refs, decs = [], {}
    for f in sorted((run_dir / "emb").glob("*.npz")):
        z = np.load(f)
        if z["ref"].size == 0:
            continue
        refs.append(z["ref"])
        for name, e in zip(z["names"].tolist(), z["emb"]):
            decs.setdefault(name, []).append(e)
    lines = ["FD-SFace: Fréchet distance between Gaussians fitted to SFace embeddings of the originals and "
             "of the decoded images (not FID: no Inception network).", "",
             "| codec | setting | FD-SFace | n |", "|---|---|---|---|"]
    for e in table:
        emb = decs.get(f"{e['codec']}|{e['setting']}", [])
        if len(emb) >= FD_MIN_IMAGES and len(refs) >= FD_MIN_IMAGES:
            fd = frechet_distance(np.stack(refs), np.stack(emb), "SFace")
            lines.append(f"| {e['codec']} | {e['setting']} | {fd.value:.4g} | {len(emb)} |")
    return "\n".join(lines)


def _lfw_markdown(lfw: dict | None) -> str:
    if not lfw:
        return ("Not measured in this run. It needs a stylecodec model (not `--model none`) and the pairs "
                "(../shared/data/lfw_pairs.csv, or `--lfw PATH`; not `--lfw none`), and runs on shard 0 only.")
    n_fallback = lfw.get("align_fallbacks", 0)
    lines = [f"{lfw['n_pairs']} pairs (balanced over the 10 folds), judge {lfw['judge']}; image_a of each pair "
             f"decoded, image_b original. LFW alignment: {lfw['align']}"
             f" ({n_fallback} face{'' if n_fallback == 1 else 's'} without a detected face: centre square).",
             "", "| decoded image_a | setting | accuracy | std | bpp | bytes |", "|---|---|---|---|---|---|"]
    for e in lfw["entries"]:
        lines.append(f"| {e['codec']} | {e['setting']} | {e['accuracy']:.4f} | {e['std']:.4f} | {fmt(e.get('bpp'))} "
                     f"| {fmt(e.get('bytes'))} |")
    lines += ["", lfw.get("note", "")]
    if lfw.get("target_misses"):
        lines.append(f"{lfw['target_misses']} faces could not meet the rate target and used the lowest quality.")
    return "\n".join(lines)


def _grid_section(run_dir: Path) -> list[str]:
    """The face grid's section, when the run folder has one (``stylecodec demo`` makes it)."""
    from .face_grid import grid_markdown

    grid = read_json(run_dir / "face_grid.json")
    if not grid or not (run_dir / "face_grid.png").is_file():
        return []
    return ["## Decoded faces", "", "Each sample face coded once at the default setting and cut to its layer "
            "prefixes; the linear prior at its largest rate point not above the stylecodec file; VVC at its floor "
            "(QP 63) and at the smallest stream that reaches the SFace identity of the all-layer face (`*`: "
            f"not reached). Model weights {grid.get('weights')}.", "",
            grid_markdown(grid["records"], "face_grid.png"), ""]


def write_report(run_dir: str | os.PathLike, headline_quality: int | None = None, target: float | None = None,
                 title: str | None = None) -> tuple[Path, str]:
    """Write every report file of ``run_dir`` from its results; returns (summary.md path, headline table)."""
    run_dir = Path(run_dir)
    rows, left_out = common_rows(load_rows(run_dir))
    info = read_json(run_dir / "run.json", {}) or {}
    lfw = read_json(run_dir / "lfw.json")
    table = mean_table(rows)
    head = headline(table, info, target, headline_quality)
    lfw_note = attach_lfw(head, lfw)
    head_md = headline_markdown(head)
    images = sorted({r["image"] for r in rows})
    title = title or f"stylecodec evaluation: {run_dir.name}"
    weights = f", weights {run_weights(info)}" if run_weights(info) != info.get("fingerprint") else ""
    model = (f"`{info.get('model')}` (fingerprint {info.get('fingerprint')}{weights}, {info.get('resolution')}x"
             f"{info.get('resolution')}, qualities {info.get('qualities')})" if info.get("model") else "none (anchors only)")
    errors = sum(1 for r in rows if r["error"])
    md = [f"# {title}", "",
          f"- images: {len(images)} from `{info.get('images')}`; model: {model}; alignment: {info.get('align')}",
          f"- rate: bpp = 8 x bytes of the whole file / (W x H) of the {info.get('resolution')}² coded face; "
          "anchors also slice-only (parameter sets agreed in advance). Metrics compare each decoded face "
          "with the aligned original. ID = identity cosine; NME normalised by the outer-eye distance.",
          f"- rows: {len(rows)} ({errors} with errors)"]
    if left_out:
        md.append(f"- {left_out} images left out: not every codec family ({', '.join(sorted({r['family'] for r in rows}))}) "
                  "has coded them yet, and every table compares the same faces")
    for group, why in (info.get("unavailable_metrics") or {}).items():
        md.append(f"- **metric {group} not measured**: {why}")
    for note in info.get("notes") or []:
        md.append(f"- {note}")
    no_face = {r["image"] for r in rows if r.get("face_ref") == 0}
    if no_face:
        md.append(f"- dlib found no face in {len(no_face)} of {len(images)} originals: their NME compares points "
                  "fitted to the whole frame.")
    md += ["", "## Headline", "", head_md, ""] + ([lfw_note, ""] if lfw_note else []) + [
           "VVC cannot code a face in fewer bytes than its floor (parameter sets + slice header at QP 63); "
           "below it only downscaled VVC remains.", "",
           *_grid_section(run_dir),
           "## BD-rate / BD-metric vs VVC", "", "Piecewise-cubic Bjøntegaard deltas on the mean RD curves (points "
           "that a cheaper point beats are dropped). BD-rate < 0: fewer bits at equal quality. BD-metric: mean "
           "metric difference at equal rate (lower is better for LPIPS and NME).", "", _bd_markdown(bd_table(table), len(images)),
           "", "## LFW verification", "", _lfw_markdown(lfw), "",
           "## Fréchet distance (FD-SFace)", "", _frechet(run_dir, table, len(images)), "",
           "## Mean per codec x setting", "",
           _md_table(table, ("codec", "codec"), [("setting", "setting"), ("n", "n")] + _COLS +
                     [("encode_s", "encode s"), ("decode_s", "decode s")]), "",
           "## Files", "", "- `index.html`: headline, RD plots, decoded faces side by side at matched rates",
           "- `rd_*.png`: RD plots; `tb/`: TensorBoard (`tensorboard --logdir tb`)",
           "- `results*.csv`: one row per image x codec x setting; `run.json`: what was run"]
    for e in table:
        if e["errors"]:
            md.append(f"- {e['codec']} {e['setting']}: {e['errors']} errors, e.g. {e['first_error'][:160]}")
    plots = rd_plots(table, head, run_dir, lfw)
    write_index(run_dir, rows, head, headline_columns(head), plots, title)
    write_tensorboard(run_dir, table, rows, head, head_md)
    path = run_dir / "summary.md"
    write_text(path, "\n".join(md) + "\n")
    return path, head_md
