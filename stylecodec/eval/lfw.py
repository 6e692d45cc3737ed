"""LFW verification with coded faces: the pieces ``stylecodec verify-lfw`` and the harness share.

- :func:`select_pairs`: the first n pairs, round-robin over the (fold, same/different) groups;
- :class:`CodedFaces`: LFW image -> aligned R x R face (:func:`stylecodec.align.align`, the step
  ``compress --align on`` uses; centre square where no face is found, counted) -> stream
  (quality or per-image bpp target) cut to n layers -> decoded face; records the bpp;
- :func:`pixel_embedder`: a pixel judge (sface, dlib or facenet) over images of mixed sizes;
- :func:`run_lfw`: the harness entries (SFace judge, never a training network): one image of each
  pair (``image_a``) replaced by the original, the aligned face without coding (the effect of
  alignment/resizing alone), stylecodec's basic layer alone (header + basic layer: the machine
  stream) and VVC at its floor (QP 63) on the same aligned face.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..anchors import get_anchor
from ..bitstream import extract, unpack
from ..errors import StylecodecError
from ..layers import LAYER_NAMES
from ..metrics.identity import DIMS, embed
from ..metrics.verification import default_pairs_csv, lfw_verification, read_pairs
from ..paths import cache_root
from .align_cache import AlignmentCache, content_key
from .choices import LFW_ENTRIES, lfw_entries
from .coding import target_setting
from .common import read_json, slug, write_json

__all__ = ["select_pairs", "CodedFaces", "pixel_embedder", "run_lfw", "verify_lfw", "ALIGN_NAME"]

# 2: the stylecodec entry codes the aligned face as it is; 1 (unversioned) ran the codec's own align
# hook on it again (eval --align auto re-aligned a few faces), so its caches and lfw.json are not reused
PROTOCOL = 2
ALIGN_NAME = "stylecodec.align.align (5-point similarity alignment to the UTKFace layout; centre square without a face)"


def select_pairs(pairs: list, n: int | None) -> list:
    """The first ``n`` pairs taken round-robin over the (fold, same) groups, in csv order."""
    if n is None or n >= len(pairs):
        return list(pairs)
    groups: dict = {}
    for p in pairs:
        groups.setdefault((p.fold, not p.same), []).append(p)
    keys, out, i = sorted(groups), [], 0
    while len(out) < n:
        for k in keys:
            if i < len(groups[k]) and len(out) < n:
                out.append(groups[k][i])
        i += 1
    return out


class CodedFaces:
    """uint8 face -> aligned -> stream cut to ``n_layers`` (-> decoded uint8); keeps the bpp of each
    cut stream (``bpps``) and of the whole file (``file_bpps``). The rate request is resolved as
    ``Codec.compress`` does (nothing given: the model's default budget); with rate budgets (``bpp``
    for the whole file, ``basic_bpp`` for the basic layer alone) that no quality meets, the lowest
    quality is used (counted in ``over_budget``). Alignment transforms and whole streams are
    cached by content in ``memo`` (pass one dict to coders of the same model and rate that keep
    different layer counts), so each image is detected and compressed once; ``align_cache`` (a
    folder) keeps the alignments on disk for other processes and later runs
    (:class:`AlignmentCache`; call :meth:`save` when done). ``last_info`` / ``restore`` let a
    resumed verification (``lfw_verification(cache=...)``) keep these counts."""

    def __init__(self, codec, n_layers: int, quality: int | None, bpp: float | None, basic_bpp: float | None = None,
                 memo: dict | None = None, align_cache: str | os.PathLike | None = None):
        self.codec, self.n_layers = codec, n_layers
        rate = codec.resolve_rate(quality, bpp, basic_bpp)
        self.quality, self.bpp, self.basic_bpp = rate.quality, rate.bpp, rate.basic_bpp
        memo = {} if memo is None else memo               # shared by coders of one model and rate, any n_layers
        if "align_cache" not in memo:
            memo["align_cache"] = AlignmentCache(align_cache, codec.resolution)
        self.align_cache: AlignmentCache = memo["align_cache"]
        self._fallback_keys: set[str] = memo.setdefault("fallbacks", set())   # no face found: centre square
        self._streams: dict[str, tuple[bytes, bool]] = memo.setdefault("streams", {})  # whole file, over budget
        self.bpps: list[float] = []
        self.file_bpps: list[float] = []
        self.over_budget = 0
        self.last_info: dict | None = None

    @property
    def fallbacks(self) -> int:
        return len(self._fallback_keys)

    def aligned(self, img: np.ndarray, key: str | None = None) -> np.ndarray:
        """uint8 [R, R, 3]: detected once per image, then warped again from the kept transform
        (a millisecond) instead of holding every aligned face in memory. ``key``: the image's
        :func:`content_key`, when the caller has it."""
        key = content_key(img) if key is None else key
        face, found = self.align_cache.aligned(img, key)
        if not found:
            self._fallback_keys.add(key)
        return face

    def stream(self, img: np.ndarray) -> bytes:
        key = content_key(img)
        if key not in self._streams:
            face = self.aligned(img, key)
            if self.quality is not None:
                data, fits = self.codec.compress(face, quality=self.quality, aligned=True), True
            else:                                   # no quality fits the budget: the lowest one
                data, fits = self.codec.compress_within(face, self.bpp, self.basic_bpp, aligned=True)
            self._streams[key] = (data, not fits)
        data, over = self._streams[key]
        self.over_budget += over
        r2 = self.codec.resolution ** 2
        self.file_bpps.append(8.0 * len(data) / r2)
        if len(unpack(data)[1]) > self.n_layers:
            data = extract(data, self.n_layers)
        self.bpps.append(8.0 * len(data) / r2)
        self.last_info = {"bpp": self.bpps[-1], "file_bpp": self.file_bpps[-1], "over_budget": over,
                          "fallback": key if key in self._fallback_keys else None}
        return data

    def save(self) -> None:
        """Write new alignments to the ``align_cache`` folder (no-op without one)."""
        self.align_cache.save()

    def restore(self, info: dict) -> None:
        """Count an image coded by an earlier, interrupted run (its ``last_info``) as if coded now."""
        self.bpps.append(float(info["bpp"]))
        self.file_bpps.append(float(info["file_bpp"]))
        self.over_budget += bool(info["over_budget"])
        if info["fallback"]:
            self._fallback_keys.add(info["fallback"])

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.codec.decompress(self.stream(img), layers=self.n_layers, output="array")


def pixel_embedder(judge: str, cache: bool = False):
    """images (list of HxWx3 uint8, sizes may differ) -> embeddings [N, d] of ``judge`` (d: DIMS). ``cache``: identical images are embedded once (the uncoded side of the pairs
    recurs in every entry of a run)."""
    memo: dict[int, np.ndarray] = {}

    def embed_fn(images: list) -> np.ndarray:
        out = np.zeros((len(images), DIMS[judge]), np.float32)
        keys = [hash((im.shape, np.ascontiguousarray(im).tobytes())) if cache else None for im in images]
        todo: dict = {}                                    # images to embed, grouped by shape
        for i, (img, k) in enumerate(zip(images, keys)):
            if k in memo:
                out[i] = memo[k]
            else:
                todo.setdefault(img.shape, []).append(i)
        for idx in todo.values():
            out[idx] = embed(np.stack([images[i] for i in idx]), judge=judge)
            if cache:
                memo.update((keys[i], out[i].copy()) for i in idx)
        return out

    return embed_fn


class _VvcFloor:
    """LFW image -> aligned face -> VVC at ``qp`` -> decoded; keeps (whole, slice-only) bytes per
    image (``sizes``), with ``last_info`` / ``restore`` for a resumed verification."""

    def __init__(self, anchor, qp: int, aligned):
        self.anchor, self.qp, self.aligned = anchor, qp, aligned
        self.sizes: list[tuple[int, int]] = []
        self.last_info: dict | None = None

    def __call__(self, img: np.ndarray) -> np.ndarray:
        enc, rec = self.anchor.roundtrip(self.aligned(img), self.qp)
        self.last_info = {"bytes": enc.nbytes, "payload_bytes": enc.payload_bytes}
        self.restore(self.last_info)
        return rec

    def restore(self, info: dict) -> None:
        self.sizes.append((int(info["bytes"]), int(info["payload_bytes"])))


def run_lfw(codec, out_dir: str | os.PathLike, pairs_csv: str | os.PathLike | None = None, n_pairs: int | None = None,
            quality: int | None = None, bpp: float | None = None, vvc_qp: int = 63, progress: bool = True,
            basic_bpp: float | None = None, entries: Sequence[str] | None = None) -> dict:
    """Run (or reuse) the verification and write ``out_dir/lfw.json``; returns its content. The
    embeddings of each entry are cached in ``out_dir/lfw_cache/`` as they are made (one file per
    entry and configuration), so an interrupted run resumes; a finished one is reused whole. Face
    alignments go to the shared ``<cache>/align`` (:class:`AlignmentCache`), so the processes of
    other entries and later runs warp instead of detecting again.

    ``entries``: only these of :data:`LFW_ENTRIES` (default: all), e.g. one per process to use
    more cores; a subset fills its caches and returns its entries with ``"partial": True`` but
    writes no ``lfw.json`` (a later run with all entries assembles it from the caches)."""
    csv_path = Path(pairs_csv) if pairs_csv else default_pairs_csv()
    pairs = select_pairs(read_pairs(csv_path), n_pairs)
    r = codec.resolution
    rate = codec.resolve_rate(quality, bpp, basic_bpp)
    q, bpp, basic_bpp = rate.quality, rate.bpp, rate.basic_bpp
    config = {"pairs_csv": str(csv_path), "n_pairs": len(pairs), "fingerprint": codec.results_id,
              "quality": q, "bpp_target": bpp, "align": ALIGN_NAME, "vvc_qp": vvc_qp, "protocol": PROTOCOL}
    if basic_bpp is not None:                  # only then, so that earlier lfw.json files are reused
        config["basic_bpp_target"] = basic_bpp
    wanted = lfw_entries(entries)
    partial = set(wanted) != set(LFW_ENTRIES)
    path = Path(out_dir) / "lfw.json"
    old = read_json(path)
    if old and old.get("config") == config and not partial and \
            [e["codec"] for e in old.get("entries", [])] == list(wanted):      # (a run before an entry existed: redo)
        return old
    memo: dict = {}                                   # each image aligned and compressed once for both entries
    coder = CodedFaces(codec, 1, q, bpp, basic_bpp, memo, align_cache=cache_root() / "align")
    head_coder = CodedFaces(codec, 1, q, bpp, basic_bpp, memo, align_cache=cache_root() / "align")
    try:
        vvc_floor = _VvcFloor(get_anchor("vvc"), vvc_qp, coder.aligned)
        runs = [("original", "-", None), ("aligned", f"{r}x{r}, no coding", coder.aligned),
                ("stylecodec-basic", f"q{q}" if q is not None else target_setting(bpp, basic_bpp), coder),
                ("stylecodec-head", f"q{q}" if q is not None else target_setting(bpp, basic_bpp), None),
                ("vvc", f"qp{vvc_qp}", vvc_floor)]
        embed_fn = pixel_embedder("sface", cache=True)
        # what each entry's embeddings depend on (not the number of pairs: a longer run reuses a shorter one's)
        depends = {"original": ("pairs_csv",), "aligned": ("pairs_csv", "align"),
                   "vvc": ("pairs_csv", "align", "vvc_qp"),
                   "stylecodec-basic": tuple(k for k in config if k != "n_pairs")}
        depends["stylecodec-head"] = depends["stylecodec-basic"]
        entries = []
        for codec_name, setting, fn in runs:
            if codec_name not in wanted:
                continue
            head = codec_name == "stylecodec-head"
            key = {k: config[k] for k in depends[codec_name]} | {"resolution": r, "judge": "head" if head else "sface"}
            tag = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
            cache = Path(out_dir) / "lfw_cache" / f"{tag}-{slug(f'{codec_name}_{setting}')}.npz"
            # the head entry codes both images and reads their identity from the basic layer (no pixels)
            fn_embed = (lambda imgs: np.stack([codec.analyze(head_coder.stream(im))["identity"] for im in imgs])) \
                if head else embed_fn
            res = lfw_verification(fn_embed, pairs, csv_path.parent / "lfw", transform_a=fn, batch_size=32,
                                   progress=progress, cache=cache)
            e = {"codec": codec_name, "setting": setting, "accuracy": res.mean, "std": res.std, "bpp": None}
            if codec_name == "stylecodec-basic":       # the head entry codes at the same setting (its bytes: these)
                e.update(bytes=float(np.mean(coder.bpps)) * r ** 2 / 8, bpp=float(np.mean(coder.bpps)),
                         bpp_other=float(np.mean(coder.file_bpps)))
            elif codec_name == "vvc":
                s = np.array(vvc_floor.sizes, np.float64)
                e.update(bytes=float(s[:, 0].mean()), bpp=float(8 * s[:, 0].mean() / r ** 2),
                         bpp_other=float(8 * s[:, 1].mean() / r ** 2))
            entries.append(e)
    finally:
        coder.save()
        head_coder.save()
    result = {"config": config, "n_pairs": len(pairs), "judge": "SFace", "align": ALIGN_NAME,
              "align_fallbacks": coder.fallbacks, "target_misses": coder.over_budget, "entries": entries,
              "note": ("bpp of stylecodec-basic: the header + basic layer stream (bpp_other: the whole file); "
                       "of vvc: the whole stream (bpp_other: slice data only). stylecodec-head: both images coded, "
                       "identity read from their basic layers by the model's analysis head (no pixels, not the "
                       "SFace judge)")}
    if partial:
        return result | {"partial": True}
    write_json(path, result)
    return result


def verify_lfw(codec, layers: str, judge: str = "sface", both: bool = False, limit_pairs: int | None = None,
               quality: int | None = None, bpp: float | None = None, pairs_csv: str | None = None,
               progress: bool = True, basic_bpp: float | None = None, cache_dir: str | Path | None = None,
               memo: dict | None = None) -> dict:
    """``stylecodec verify-lfw``'s protocol (see that command's docstring): the first image of every
    pair (``both``: both) aligned, compressed, cut to ``layers`` and decoded, or read by the
    identity head (``judge="head"``, basic layer only); returns accuracy, folds, mean bpp and counts.
    ``cache_dir``: resume cache for pixel judges (None: none); ``memo``: a dict shared by calls for
    other layers with the same model and rate (each image aligned and compressed once)."""
    csv_path = Path(pairs_csv) if pairs_csv else default_pairs_csv()
    if not csv_path.is_file() or not (csv_path.parent / "lfw").is_dir():
        raise StylecodecError(f"LFW pairs not found at {csv_path} (with images in {csv_path.parent / 'lfw'}): "
                              "verify-lfw needs the shared data folder (../shared/data; set STYLECODEC_SHARED) "
                              "or --pairs CSV")
    if limit_pairs is not None and limit_pairs < 4:
        raise StylecodecError("--limit-pairs must be at least 4 (two folds, same and different pairs)")
    if judge == "head" and layers != "basic":
        raise StylecodecError("--judge head reads the basic layer only; use --layers basic")
    pairs = select_pairs(read_pairs(csv_path), limit_pairs)
    rate = codec.resolve_rate(quality, bpp, basic_bpp)                      # nothing given: the model's budget
    quality, bpp, basic_bpp = rate.quality, rate.bpp, rate.basic_bpp
    align_cache = None if cache_dir is None else cache_root() / "align"     # shared with eval's LFW entries
    coder = CodedFaces(codec, LAYER_NAMES.index(layers) + 1, quality, bpp, basic_bpp, memo, align_cache)
    try:
        if judge == "head":
            res = lfw_verification(lambda imgs: np.stack([codec.analyze(coder.stream(im))["identity"] for im in imgs]),
                                   pairs, csv_path.parent / "lfw", progress=progress)
            both = True
        else:
            cache = None
            if cache_dir is not None:
                key = {"model": codec.results_id, "layers": layers, "judge": judge, "both": both,
                       "quality": quality, "bpp": bpp, "basic_bpp": basic_bpp, "pairs": str(csv_path.resolve()),
                       "align": ALIGN_NAME}
                cache = Path(cache_dir) / (hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
                                           + ".npz")
            res = lfw_verification(pixel_embedder(judge), pairs, csv_path.parent / "lfw", transform_a=coder,
                                   transform_b=coder if both else None, progress=progress, cache=cache)
    finally:
        coder.save()
    return {"judge": judge, "layers": layers, "both": both, "pairs": res.n_pairs,
            "accuracy_mean": res.mean, "accuracy_std": res.std, "fold_accuracy": res.fold_accuracy,
            "mean_bpp": float(np.mean(coder.bpps)), "coded_images": len(coder.bpps),
            "align_fallbacks": coder.fallbacks, "over_budget": coder.over_budget, "quality": quality, "bpp_target": bpp,
            "basic_bpp_target": basic_bpp,
            "resolution": codec.resolution, "model_fingerprint": f"0x{codec.fingerprint:04x}",
            "model_weights": codec.weights_id,
            "search_steps": codec.search.config.steps if codec.search else 0}
