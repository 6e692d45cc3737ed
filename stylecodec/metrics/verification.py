"""LFW 10-fold face verification with any embedding network, optionally on decoded images.

Protocol: cosine similarity of the two embeddings of each pair; "same person" iff
similarity >= threshold. For each fold the threshold maximising accuracy on the OTHER folds
is chosen (exactly: a midpoint between neighbouring similarities), then accuracy is measured
on the held-out fold. Reported: mean and (population) std of the fold accuracies.

``transform_a`` / ``transform_b`` (uint8 (H,W,3) -> uint8 (H,W,3), e.g. encode + decode)
replace the first / second image of every pair. Each distinct (image, transform) is loaded,
transformed and embedded once per call. With ``cache`` (an .npz file) the finished embeddings
are saved (every ``SAVE_EVERY_S`` seconds and whenever the call ends, interrupted or failed) and
reused by the next call, so an interrupted run resumes where it stopped; a transform's
``last_info`` (a JSON-able dict, read after each call) is saved with them and handed back to
its ``restore(info)`` for the images a resumed run does not redo.
One process at a time fills a cache (an advisory lock on ``<cache>.lock``); a second one stops
with an error.
"""
from __future__ import annotations

import csv
import json
import os
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import StylecodecError
from ..files import file_lock, write_npz
from ..paths import shared_dir

__all__ = ["Pair", "VerificationResult", "read_pairs", "default_pairs_csv", "best_threshold",
           "kfold_accuracy", "lfw_verification"]

Transform = Callable[[np.ndarray], np.ndarray]
EmbedFn = Callable[[list[np.ndarray]], object]
SAVE_EVERY_S = 60.0     # a cache is rewritten whole at most this often (and when the call ends in any way)


@dataclass(frozen=True)
class Pair:
    image_a: str
    image_b: str
    same: bool
    fold: int


@dataclass
class VerificationResult:
    """Mean/std accuracy over folds, per-fold accuracy and the threshold each fold used."""

    mean: float
    std: float
    fold_accuracy: list[float]
    thresholds: list[float]
    n_pairs: int
    similarity: np.ndarray = field(repr=False)   # (P,) cosine per pair, csv order
    same: np.ndarray = field(repr=False)         # (P,) bool


def default_pairs_csv() -> Path:
    """``$STYLECODEC_SHARED/data/lfw_pairs.csv``, else ``../shared/data/lfw_pairs.csv``."""
    return shared_dir() / "data" / "lfw_pairs.csv"


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Read a pairs csv with columns ``image_a,image_b,same_person,fold``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {path} does not exist")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"image_a", "image_b", "same_person", "fold"}
        if not need <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: needs columns {sorted(need)}, has {reader.fieldnames}")
        try:
            pairs = [Pair(r["image_a"], r["image_b"], bool(int(r["same_person"])), int(r["fold"]))
                     for r in reader]
        except ValueError as e:
            raise ValueError(f"{path} line {reader.line_num}: {e}") from None
    if not pairs:
        raise ValueError(f"{path} holds no pairs")
    return pairs


def best_threshold(sim: np.ndarray, same: np.ndarray) -> float:
    """Threshold maximising the accuracy of ``sim >= t`` as a predictor of ``same``.

    Exact over all cut points: the midpoint between the two neighbouring similarities, or
    -inf / +inf for "all same" / "all different"; ties keep the lowest such threshold.
    """
    sim, same = np.asarray(sim, np.float64), np.asarray(same, bool)
    if sim.shape != same.shape or sim.ndim != 1 or sim.size == 0:
        raise ValueError(f"need matching non-empty 1-d arrays, got {sim.shape} and {same.shape}")
    order = np.argsort(sim, kind="stable")
    s, y = sim[order], same[order]
    # cut k: pairs [0, k) predicted different, [k, n) predicted same
    neg_below = np.concatenate([[0], np.cumsum(~y)])
    pos_below = np.concatenate([[0], np.cumsum(y)])
    correct = neg_below + (y.sum() - pos_below)
    valid = np.ones(len(s) + 1, bool)
    valid[1:-1] = s[1:] > s[:-1]       # a cut cannot split equal similarities
    k = int(np.argmax(np.where(valid, correct, -1)))
    if k == 0:
        return -np.inf
    if k == len(s):
        return np.inf
    return float((s[k - 1] + s[k]) / 2)


def kfold_accuracy(sim: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-fold accuracy and threshold, each threshold chosen on the other folds only.

    sim, same, folds: (P,) arrays; returns (accuracy (F,), threshold (F,)) in sorted fold order.
    """
    sim, same, folds = np.asarray(sim, np.float64), np.asarray(same, bool), np.asarray(folds)
    ids = np.unique(folds)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 folds, got {ids.tolist()}")
    acc, thr = np.empty(len(ids)), np.empty(len(ids))
    for i, f in enumerate(ids):
        test = folds == f
        thr[i] = best_threshold(sim[~test], same[~test])
        acc[i] = np.mean((sim[test] >= thr[i]) == same[test])
    return acc, thr


def _load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _cache_key(item: tuple[str, str | None]) -> str:
    return f"{item[0]}\t{item[1] or ''}"


def _load_cache(path: Path | None) -> tuple[dict, dict]:
    """(item -> unit embedding, item -> info) of a cache file; ({}, {}) when there is none."""
    if path is None or not path.is_file():
        return {}, {}
    try:
        with np.load(path) as z:
            keys, emb, infos = z["keys"].tolist(), z["emb"], json.loads(str(z["info"]))
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"verification cache {path} is unreadable ({e}); delete it to start over") from None
    items = [(k.split("\t")[0], k.split("\t")[1] or None) for k in keys]
    return dict(zip(items, emb)), {it: infos[k] for it, k in zip(items, keys) if k in infos}


def _save_cache(path: Path, out: dict, infos: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(out)
    write_npz(path, {"keys": np.array([_cache_key(k) for k in keys]), "emb": np.stack([out[k] for k in keys]),
                     "info": np.array(json.dumps({_cache_key(k): v for k, v in infos.items()}))})


@contextmanager
def _cache_lock(path: Path | None):
    """Hold an advisory lock (``<cache>.lock``, :func:`stylecodec.files.file_lock`) while a process
    fills ``path``: a second process on the same cache stops with a clear error instead of
    overwriting the first one's work. No-op without a cache."""
    if path is None:
        yield
        return

    with ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path, wait=False))
        except BlockingIOError:
            raise StylecodecError(f"verification cache {path} is being filled by another process; "
                                  "wait for it, or run this one with another cache") from None
        yield


def _embed_all(items: list[tuple[str, str | None]], image_dir: Path, transforms: dict,
               embed_fn: EmbedFn, batch_size: int, progress: bool, cache: Path | None = None) -> dict:
    with _cache_lock(cache):
        return _embed_locked(items, image_dir, transforms, embed_fn, batch_size, progress, cache)


def _embed_locked(items: list[tuple[str, str | None]], image_dir: Path, transforms: dict,
                  embed_fn: EmbedFn, batch_size: int, progress: bool, cache: Path | None) -> dict:
    store, infos = _load_cache(cache)             # everything the file holds (kept when saving), then the new
    todo = [it for it in items if it not in store]
    for it in items:                                 # side statistics of the images not redone
        restore = getattr(transforms.get(it[1]), "restore", None)
        if restore is not None and it in store and it in infos:
            restore(infos[it])
    unsaved, last_save = 0, time.monotonic()
    bar = tqdm(total=len(items), initial=len(items) - len(todo), unit="img", desc="verification",
               disable=not progress)
    try:
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            store.update(zip(batch, _embed_batch(batch, image_dir, transforms, embed_fn, infos)))
            unsaved += len(batch)
            if cache is not None and time.monotonic() - last_save >= SAVE_EVERY_S:
                _save_cache(cache, store, infos)
                unsaved, last_save = 0, time.monotonic()
            bar.update(len(batch))
    finally:                                         # finished, failed or interrupted: keep what is done
        bar.close()
        if cache is not None and unsaved:
            _save_cache(cache, store, infos)
    return {it: store[it] for it in items}


def _embed_batch(batch: list[tuple[str, str | None]], image_dir: Path, transforms: dict, embed_fn: EmbedFn,
                 infos: dict) -> np.ndarray:
    """(N, D) unit embeddings of the (image, transform tag) items; records the transforms' ``last_info``."""
    images = []
    for name, tag in batch:
        img = _load_rgb(image_dir / name)
        if tag is not None:
            img = np.asarray(transforms[tag](img))
            info = getattr(transforms[tag], "last_info", None)
            if info is not None:
                infos[(name, tag)] = info
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
                raise ValueError(f"transform_{tag} must return a uint8 (H,W,3) image, got "
                                 f"{img.dtype} {img.shape} for {name}")
        images.append(img)
    emb = embed_fn(images)
    if hasattr(emb, "detach"):
        emb = emb.detach().cpu().numpy()
    emb = np.asarray(emb, np.float64)
    if emb.ndim != 2 or len(emb) != len(batch):
        raise ValueError(f"embed_fn must return (N, D) for N={len(batch)} images, got {emb.shape}")
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    if np.any(norm == 0) or not np.all(np.isfinite(norm)):
        raise ValueError("embed_fn returned a zero or non-finite embedding")
    return emb / norm


def lfw_verification(embed_fn: EmbedFn, pairs: str | os.PathLike | Sequence[Pair] | None = None,
                     image_dir: str | os.PathLike | None = None,
                     transform_a: Transform | None = None, transform_b: Transform | None = None,
                     batch_size: int = 64, progress: bool = True,
                     cache: str | os.PathLike | None = None) -> VerificationResult:
    """10-fold verification accuracy of ``embed_fn`` on LFW pairs.

    embed_fn:    list of uint8 RGB (H,W,3) images -> (N, D) embeddings (numpy or torch).
    pairs:       a pairs csv (default :func:`default_pairs_csv`) or a list of :class:`Pair`.
    image_dir:   folder of the images (default: ``lfw/`` beside the csv).
    transform_a, transform_b: optional uint8 image -> uint8 image applied to the first /
                 second image of each pair (the same callable for both is applied once per image).
    cache:       optional .npz file of finished embeddings (see the module docstring); one file per
                 configuration (embedder, transforms): the caller names it.
    """
    if pairs is None or isinstance(pairs, (str, os.PathLike)):
        csv_path = Path(pairs) if pairs is not None else default_pairs_csv()
        pairs = read_pairs(csv_path)
        image_dir = Path(image_dir) if image_dir is not None else csv_path.parent / "lfw"
    elif image_dir is None:
        raise ValueError("image_dir is needed when pairs is given as a list")
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist")

    tag_a = None if transform_a is None else "a"
    tag_b = None if transform_b is None else ("a" if transform_b is transform_a else "b")
    keys = [((p.image_a, tag_a), (p.image_b, tag_b)) for p in pairs]
    items = list(dict.fromkeys(k for pair in keys for k in pair))
    emb = _embed_all(items, image_dir, {"a": transform_a, "b": transform_b}, embed_fn,
                     batch_size, progress, Path(cache) if cache is not None else None)

    sim = np.array([emb[ka] @ emb[kb] for ka, kb in keys])
    same = np.array([p.same for p in pairs])
    acc, thr = kfold_accuracy(sim, same, np.array([p.fold for p in pairs]))
    return VerificationResult(mean=float(acc.mean()), std=float(acc.std()),
                              fold_accuracy=acc.tolist(), thresholds=thr.tolist(),
                              n_pairs=len(pairs), similarity=sim, same=same)
