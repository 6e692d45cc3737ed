"""Teacher labels for the analysis heads, computed once per (dataset, resolution, file list) and cached.

For every face, loaded exactly as the codec trains on it (:func:`stylecodec.images.load_rgb`:
centre square, Lanczos to R x R):

- ``landmarks`` float32 [N, 68, 2]: dlib 68 points, normalised to [0, 1] as ``(p + 0.5) / R``;
- ``found`` bool [N]: dlib's detector found the face (else the points were fitted to the
  whole image: the trainer leaves them out of the landmark loss);
- ``identity`` float32 [N, 512]: facenet CASIA-WebFace embedding (unit vectors) of the face.

Cache: ``<cache>/teacher/<key>.npz`` with ``key`` = sha256 of (dataset folder name, resolution,
file names and sizes)[:16] (:func:`cache_key`; portable between machines, so labels made on
a CPU box can be carried to a GPU box); ``<cache>`` is ``$STYLECODEC_CACHE`` or ``~/.cache/stylecodec``.
Work is done in chunks saved as ``<key>.parts/part-<start>.npz``, so an interrupted run
resumes where it stopped; the parts are merged and removed at the end.

    python -m stylecodec.analysis.teacher [--data DIR] --resolution 256 [--split train] [--limit N] [--export FILE]

``--export FILE.npz`` also writes the landmarks alone (``files``, ``landmarks`` float16,
``found``; 9.7 MB for UTKFace's 22,707 training faces), small enough to carry to a machine
without dlib and train there with ``stylecodec train codec --teacher-labels FILE.npz``.
"""
from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..assets.facenet import load_facenet, preprocess
from ..assets.landmarks import dlib_points
from ..data import default_data_root, list_images, split_files
from ..errors import StylecodecError
from ..files import write_npz
from ..images import load_rgb
from ..paths import cache_root

__all__ = ["cache_key", "default_cache_dir", "chunked_npz", "label_images", "teacher_labels", "main"]

ARRAYS = ("landmarks", "found", "identity")


def default_cache_dir() -> Path:
    """``$STYLECODEC_CACHE/teacher`` or ``~/.cache/stylecodec/teacher``."""
    return cache_root() / "teacher"


def cache_key(root: str | os.PathLike, resolution: int, files: Sequence[str]) -> str:
    """16 hex digits naming the dataset (folder name; each file's name and size, in order) and the
    resolution. Unlike the absolute path this survives moving the data to another machine."""
    root = Path(root)
    h = hashlib.sha256(f"{root.resolve().name}\n{int(resolution)}\n".encode())
    for f in files:
        h.update(f"{f}\t{(root / f).stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def chunked_npz(path: str | os.PathLike, n: int, compute: Callable[[int, int], dict], chunk: int = 256,
                desc: str = "labels", progress: bool = True, meta: dict | None = None,
                helper: bool = False) -> dict[str, np.ndarray] | None:
    """Arrays over items 0..n-1 from ``path`` if it exists, else computed chunk by chunk
    (``compute(start, stop) -> {name: array [stop - start, ...]}``), each chunk saved under
    ``<path>.parts/`` (a rerun skips finished chunks, and so does a run that finds a chunk finished
    by another process), merged into ``path`` atomically.
    ``meta`` (name -> array) is stored with the result and checked when it is loaded.
    ``helper``: fill chunks from the last one backwards, for a second process beside a running one;
    stop at the first finished chunk and return None (the forward run merges)."""
    path = Path(path)
    meta = {k: np.asarray(v) for k, v in (meta or {}).items()}
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
        for k, v in meta.items():
            if k not in out or not np.array_equal(out[k], v):
                raise StylecodecError(f"cache {path} does not match its key ({k} differs); delete it")
        return out
    parts = path.with_name(path.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, n, chunk))
    part = lambda s: parts / f"part-{s:08d}.npz"                                 # noqa: E731
    done = {s for s in starts if part(s).is_file()}
    with tqdm(total=n, initial=sum(min(chunk, n - s) for s in done), desc=desc, unit="img",
              disable=not progress, dynamic_ncols=True) as bar:
        for s in (starts[::-1] if helper else starts):
            if part(s).is_file():                   # finished earlier, or meanwhile by another process
                if helper:
                    return None
                if s not in done:
                    bar.update(min(chunk, n - s))
                continue
            arrays = compute(s, min(s + chunk, n))
            write_npz(part(s), arrays)
            bar.update(min(chunk, n - s))
    if helper:
        return None
    pieces = []
    for s in starts:
        with np.load(part(s), allow_pickle=False) as z:
            pieces.append({k: z[k] for k in z.files})
    out = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]} if pieces else {}
    out.update(meta)
    write_npz(path, out)
    shutil.rmtree(parts, ignore_errors=True)
    return out


def label_images(images: np.ndarray, device: str = "cpu", workers: int = 1) -> dict[str, np.ndarray]:
    """uint8 faces [N, R, R, 3] -> {"landmarks" [N, 68, 2] normalised, "found" [N], "identity" [N, 512]}.
    ``workers`` > 1 runs dlib (single-threaded) in that many processes."""
    r = images.shape[1]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(dlib_points, images, chunksize=8))
    else:
        results = [dlib_points(img) for img in images]
    lms = [(pts + 0.5) / r for pts, _ in results]
    found = [ok for _, ok in results]
    net = _facenet(device)
    with torch.no_grad():
        emb = net(preprocess(images).to(device)).float().cpu().numpy()
    return {"landmarks": np.stack(lms).astype(np.float32), "found": np.array(found, bool),
            "identity": emb.astype(np.float32)}


_NETS: dict = {}


def _facenet(device: str):
    if device not in _NETS:
        _NETS[device] = load_facenet(device)
    return _NETS[device]


def teacher_labels(root: str | os.PathLike, files: Sequence[str], resolution: int,
                   cache_dir: str | os.PathLike | None = None, chunk: int = 256, device: str = "cpu",
                   progress: bool = True, workers: int = 1) -> dict[str, np.ndarray]:
    """Cached teacher labels of ``files`` (names inside ``root``) at ``resolution``; see the module doc.
    Also returns ``files`` (the names, in order)."""

    root, files = Path(root), list(files)
    if not files:
        raise StylecodecError("no files to label")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"{cache_key(root, resolution, files)}.npz"

    def compute(start: int, stop: int) -> dict:
        imgs = np.stack([load_rgb(root / f, resolution) for f in files[start:stop]])
        return label_images(imgs, device, workers)

    return chunked_npz(path, len(files), compute, chunk, desc="teacher labels", progress=progress,
                       meta={"files": np.array(files), "resolution": np.array(int(resolution))})


def main(argv: list[str] | None = None) -> int:
    """Shell entry: compute (or find) the teacher labels of a split."""
    p = argparse.ArgumentParser(prog="python -m stylecodec.analysis.teacher", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(default_data_root()), help="image folder (default: %(default)s)")
    p.add_argument("--resolution", type=int, required=True, help="the model resolution R")
    p.add_argument("--split", choices=("train", "val", "all"), default="train")
    p.add_argument("--val-count", type=int, default=1000, help="last N files by name are validation")
    p.add_argument("--limit", type=int, default=None, help="label only the first N files of the split")
    p.add_argument("--cache-dir", default=None, help=f"default: {default_cache_dir()}")
    p.add_argument("--chunk", type=int, default=256, help="images per saved chunk")
    p.add_argument("--device", default="cpu", help="device for facenet")
    p.add_argument("--workers", type=int, default=1, help="processes for dlib (default 1)")
    p.add_argument("--export", metavar="FILE.npz", default=None,
                   help="also write files + landmarks (float16) + found here, for --teacher-labels")
    a = p.parse_args(argv)
    try:
        files = split_files(list_images(a.data), a.split, a.val_count)[:a.limit]
        out = teacher_labels(a.data, files, a.resolution, a.cache_dir, a.chunk, a.device, workers=a.workers)
        if a.export:
            write_npz(Path(a.export), {"files": np.array(files), "landmarks": out["landmarks"].astype(np.float16),
                                           "found": out["found"]})
            print(f"landmarks written to {a.export}")
    except StylecodecError as e:
        print(f"teacher: error: {e}", file=sys.stderr)
        return 1
    print(f"{len(files)} faces labelled ({int(out['found'].sum())} with a dlib detection), cached in "
          f"{Path(a.cache_dir) if a.cache_dir else default_cache_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
