"""``stylecodec eval``: code every image with stylecodec and the anchors, measure, write ``results.csv``.

    run_eval(EvalConfig(images="faces/", out="runs/x", anchors=["vvc", "jpeg"]))

Per image: the aligned original (the codec's ``align`` to R x R, centre square by default) is
what every codec codes and what every metric compares with. Rows already in the run folder
(any ``results*.csv``, keyed by image, codec, setting) are not redone; the folder's CSV is
rewritten atomically after each image, so a run can be stopped and restarted at any time.
``shard=(k, N)`` takes the images whose sorted index i has i % N == k and writes
``results.shard-k-of-N.csv``. Side outputs: ``run.json`` (what was run), ``img/`` (thumbnails
of the first ``thumbs`` images, for ``index.html``), ``emb/`` (SFace embeddings, for FD-SFace).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..align import FaceAligner
from ..anchors import AnchorError
from ..batch import find_images, select_shard, shard_tag
from ..codec import Codec
from ..errors import StylecodecError
from ..files import write_atomic
from ..images import ImageReadError, centre_square, load_image
from .choices import DEFAULT_ANCHORS
from .coding import code_anchor, code_stylecodec, error_row, head_landmarks, style_keys, targets_from_sweep
from .common import read_json, slug, write_json, write_png
from .measure import Measurer, Reference, head_nme
from .results import load_rows, read_rows, results_path, row_key, save_embeddings, stylecodec_weights, write_rows
from .settings import AnchorSpec, anchor_specs, parse_qualities, setting_name

__all__ = ["EvalConfig", "run_eval", "load_codec", "make_aligner", "thumb_path", "THUMB_MAX"]

THUMB_MAX = 128


@dataclass
class EvalConfig:
    """What :func:`run_eval` does; see ``stylecodec eval --help`` for each field."""

    images: str | os.PathLike
    out: str | os.PathLike
    model: str | None = "default"            # None or "none": anchors only, at ``resolution``
    anchors: list[str] = field(default_factory=lambda: list(DEFAULT_ANCHORS))
    qps: dict[str, list[float]] = field(default_factory=dict)
    downscale: list[float] = field(default_factory=lambda: [2.0, 4.0])
    qualities: str | None = None             # "all" / None or "0,2,5"
    bpp_targets: list[float] = field(default_factory=list)
    basic_bpp: float | None = None           # budget of the basic layer alone at every rate target
    limit: int | None = None
    val_count: int | None = None
    shard: tuple[int, int] | None = None
    thumbs: int = 8
    skip_metrics: tuple[str, ...] = ()
    resolution: int = 256
    align: str = "off"                       # off (centre square) | auto | on: see stylecodec.align
    device: str = "cpu"
    threads: int | None = None
    retry_errors: bool = False
    progress: bool = True
    codec: object = None                     # an already loaded Codec (overrides ``model``)


def make_aligner(mode: str = "off"):
    """The codec's ``align`` hook for --align off (centre square) | auto | on (stylecodec.align.FaceAligner)."""
    return centre_square if mode == "off" else FaceAligner(mode)


def load_codec(model: str | None, device: str = "cpu", align: str = "off"):
    """A :class:`~stylecodec.codec.Codec` (``align``: off | auto | on), or None for ``model`` None / "none"."""
    if model is None or str(model).lower() == "none":
        return None
    return Codec.from_pretrained(model, device=device, align=make_aligner(align))


def thumb_path(run_dir: str | os.PathLike, image: str, codec: str = "original", setting: str = "") -> Path:
    """Where the thumbnail of one image (``codec="original"``) or one decoded row is saved."""
    return Path(run_dir) / "img" / slug(image) / f"{slug(f'{codec}_{setting}')}.png"


def _run_info(cfg: EvalConfig, codec, specs: list[AnchorSpec], qualities, n_images: int, align: str) -> dict:
    info = {"images": os.path.abspath(cfg.images), "n_images": n_images, "val_count": cfg.val_count,
            "limit": cfg.limit, "thumbs": cfg.thumbs, "align": align, "bpp_targets": list(cfg.bpp_targets),
            "basic_bpp": cfg.basic_bpp,
            "anchors": {s.codec: list(s.qs) for s in specs}, "skip_metrics": list(cfg.skip_metrics)}
    if codec is None:
        info.update(model=None, resolution=cfg.resolution)
    else:
        loaded = codec.loaded
        meta = loaded.meta if loaded is not None else {}
        info.update(model=str(cfg.model), model_source=str(loaded.source) if loaded is not None else None,
                    fingerprint=f"0x{codec.fingerprint:04x}", weights=codec.results_id, resolution=codec.resolution,
                    qualities=list(qualities), num_qualities=len(codec.quality_range),
                    default_quality=(meta.get("rate_control") or {}).get("default_quality"),   # the trainer's record
                    has_analyze=hasattr(codec, "analyze"))
    return info


def _derive_targets(ctx, idx: int, name: str, rows: list[dict], pending: set) -> list[dict]:
    """Target rows taken from the image's finished sweep rows (:func:`targets_from_sweep`), with
    their SFace embeddings and thumbnails."""
    codec, cfg = ctx["codec"], ctx["cfg"]
    if codec is None or not cfg.bpp_targets:
        return []
    derived = targets_from_sweep(rows, codec.quality_range, codec.resolution, cfg.bpp_targets, cfg.basic_bpp, pending)
    if not derived:
        return []
    emb_path = Path(cfg.out) / "emb" / f"{slug(name)}.npz"
    if emb_path.is_file():
        with np.load(emb_path) as z:
            table = dict(zip(z["names"].tolist(), z["emb"]))
        pairs = [(f"{r['codec']}|{r['setting']}", table.get(f"{r['codec']}|{src}")) for r, src in derived]
        pairs = [(k, e) for k, e in pairs if e is not None]
        if pairs:
            save_embeddings(emb_path, None, [k for k, _ in pairs], [e for _, e in pairs])
    for r, src in derived:
        thumb = thumb_path(cfg.out, name, r["codec"], src)
        if idx < cfg.thumbs and thumb.is_file():
            target = thumb_path(cfg.out, name, r["codec"], r["setting"])
            write_atomic(os.fspath(target), lambda tmp, t=thumb: Path(tmp).write_bytes(t.read_bytes()),
                         make_parents=True)
    return [r for r, _ in derived]


def _measure_image(ctx, idx: int, name: str, pending: set) -> list[dict]:
    """Code and measure one image for its pending (codec, setting) pairs; return the rows."""
    codec, cfg = ctx["codec"], ctx["cfg"]
    try:
        img = load_image(Path(cfg.images) / name)
        ref = Reference(np.asarray(ctx["align"](img, ctx["res"]).convert("RGB"), dtype=np.uint8))
    except (ImageReadError, StylecodecError, OSError, ValueError) as e:
        return [error_row(name, c, s, "stylecodec" if c.startswith("stylecodec") else c.split("_down")[0],
                          f"{type(e).__name__}: {e}") for c, s in sorted(pending)]
    items: list[tuple[dict, np.ndarray | None]] = []
    basic_streams = {}
    if codec is not None:
        try:
            coded = code_stylecodec(codec, ref.arr, name, ctx["qualities"], cfg.bpp_targets, pending,
                                    cfg.basic_bpp)
        except StylecodecError as e:          # e.g. a stream the model cannot decode: log it, go on
            coded = [(error_row(name, c, s, "stylecodec", f"{type(e).__name__}: {e}"), None, b"")
                     for c, s in sorted(pending) if c.startswith("stylecodec")]
        for row, arr, part in coded:
            items.append((row, arr))
            if row.get("layers") == 1:
                basic_streams[id(row)] = part
    for spec in ctx["specs"]:
        items += code_anchor(spec, ctx["anchors"][spec.codec], ref.arr, name, pending)
    measured = [(row, arr) for row, arr in items if arr is not None]
    metrics, emb = ctx["measurer"].measure(ref, [arr for _, arr in measured])
    for (row, _), m in zip(measured, metrics):
        row.update(m)
        if id(row) in basic_streams and ctx["head_ok"]:
            try:
                pts = head_landmarks(codec, basic_streams[id(row)])
                row["nme_head"] = head_nme(pts, ref) if pts is not None else None
            except Exception as e:  # noqa: BLE001  a head that cannot run must not stop the evaluation
                ctx["head_ok"] = False
                ctx["notes"].append(f"base-layer head NME not measured: {type(e).__name__}: {e}")
    if emb is not None:
        names = [f"{row['codec']}|{row['setting']}" for row, _ in measured]
        save_embeddings(Path(cfg.out) / "emb" / f"{slug(name)}.npz", ctx["measurer"].ref_embedding(ref),
                        names, list(emb))
    if idx < cfg.thumbs:
        size = min(ctx["res"], THUMB_MAX)
        write_png(thumb_path(cfg.out, name), ref.arr, size)
        for row, arr in measured:
            write_png(thumb_path(cfg.out, name, row["codec"], row["setting"]), arr, size)
    return [row for row, _ in items]


def run_eval(cfg: EvalConfig) -> dict:
    """Run (or resume) an evaluation; returns {"rows_new", "rows_total", "images", "results"}."""
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    if cfg.basic_bpp is not None and not cfg.bpp_targets:
        raise StylecodecError("--basic-bpp is a budget of the rate-target rows: give --bpp-targets too")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    codec = cfg.codec if cfg.codec is not None else load_codec(cfg.model, cfg.device, cfg.align)
    align_fn = codec.align if codec is not None else make_aligner(cfg.align)
    names = find_images(cfg.images, cfg.val_count, cfg.limit)
    mine = select_shard(names, cfg.shard)
    specs = anchor_specs(cfg.anchors, cfg.qps, cfg.downscale)
    anchors = {s.codec: s.build() for s in specs}
    notes = []
    for s in list(specs):
        try:
            anchors[s.codec].check_available()
            anchors[s.codec].prepare()                  # e.g. fit the linear prior once, before any timing
        except AnchorError as e:
            if not anchors[s.codec].optional:
                raise
            notes.append(f"anchor {s.codec} not run: {e}")      # e.g. the linear prior without training faces
            warnings.warn(notes[-1], stacklevel=2)
            specs.remove(s)
    qualities = parse_qualities(cfg.qualities, codec.quality_range) if codec is not None else []
    align = getattr(align_fn, "__name__", None) or f"{type(align_fn).__name__}({getattr(align_fn, 'mode', '')})"
    old = read_json(out / "run.json", {}) or {}
    new = _run_info(cfg, codec, specs, qualities, len(names), align)
    before = stylecodec_weights(out)
    if before and new.get("weights") and before != new["weights"]:
        raise StylecodecError(f"{out} holds stylecodec rows of model {before}; this model is {new['weights']}: "
                              "evaluate it into another --out folder")
    # rows of earlier runs stay in the folder: so do their rate targets (and the basic budget they used)
    new["bpp_targets"] = list(dict.fromkeys([*new["bpp_targets"], *(old.get("bpp_targets") or [])]))
    if new["basic_bpp"] is None and not cfg.bpp_targets and old.get("bpp_targets"):
        new["basic_bpp"] = old.get("basic_bpp")
    info = {**old, **new}
    write_json(out / "run.json", info)
    keys = (style_keys(qualities, cfg.bpp_targets, cfg.basic_bpp) if codec is not None else []) + \
        [(s.codec, setting_name(anchors[s.codec].quality_name, q)) for s in specs for q in s.qs]
    finished = load_rows(out)
    done = {row_key(r) for r in finished if not (cfg.retry_errors and r["error"])}
    by_image: dict[str, list[dict]] = {}
    for r in finished:
        by_image.setdefault(r["image"], []).append(r)
    own_path = results_path(out, shard_tag(cfg.shard))
    own = read_rows(own_path)
    measurer = Measurer(cfg.skip_metrics)
    ctx = {"cfg": cfg, "codec": codec, "align": align_fn, "specs": specs, "anchors": anchors, "qualities": qualities,
           "measurer": measurer, "res": codec.resolution if codec is not None else cfg.resolution,
           "head_ok": codec is not None and hasattr(codec, "analyze"), "notes": notes}
    new = 0
    with warnings.catch_warnings():
        warnings.simplefilter("once")
        for idx, name in tqdm(mine, desc="eval", unit="img", disable=not cfg.progress):
            pending = {k for k in keys if (name, *k) not in done}
            if not pending:
                continue
            rows = _derive_targets(ctx, idx, name, by_image.get(name, []), pending)
            pending -= {(r["codec"], r["setting"]) for r in rows}
            if pending:
                rows += _measure_image(ctx, idx, name, pending)
            redo = {row_key(r) for r in rows}
            own = [r for r in own if row_key(r) not in redo] + rows
            write_rows(own_path, own)
            new += len(rows)
    info.update(unavailable_metrics=measurer.unavailable,
                notes=list(dict.fromkeys([*info.get("notes", []), *ctx["notes"]])))
    write_json(out / "run.json", info)
    return {"rows_new": new, "rows_total": len(load_rows(out)), "images": len(mine), "results": own_path,
            "codec": codec}
