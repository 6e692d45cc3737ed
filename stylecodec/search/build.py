"""``stylecodec index``: build or extend an identity index from folders of streams or images.

    counts = build_index(codec, ["faces_sfc/"], "faces.sfi")

Each SRC is a folder of ``.sfc`` streams (recursive; only the header and basic layer of each
file are read), a folder of images (compressed first into a streams folder exactly as
``stylecodec compress-dir`` does, resumable, then indexed from those streams), or another index
file of the same model (merged). ``shard=(k, N)`` takes the files whose sorted index i has
i % N == k (per SRC), so N machines can each build a part; merging their indexes gives the whole.

Resumable and appendable: entries already in the index (same folder, same name) are not
decoded again; the index is saved atomically (temporary file + rename) every ``save_every``
seconds, at the end, when ``stop()`` asks (``stylecodec index``: SIGINT / SIGTERM, checked between
batches) and on an exception, so a run killed at any moment leaves the last saved index intact
and the next run adds exactly what is missing. A stream that cannot be read (damaged, truncated, another model) or an
image that cannot be coded is recorded in the index's ``skipped`` list with its reason; it is
tried again by the next run and leaves that list once it is indexed.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import StylecodecError
from .index import IdentityIndex, IndexFileError

__all__ = ["build_index", "list_streams", "index_batch", "SAVE_EVERY_S", "BATCH"]

SAVE_EVERY_S = 30.0
BATCH = 256          # streams decoded together (LSET batch); 128-256 is the measured optimum on a CPU


def list_streams(folder: str | os.PathLike) -> list[str]:
    """``.sfc`` files under ``folder`` (recursive), relative, '/'-separated, sorted; hidden ones skipped."""
    root = Path(folder)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.sfc")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def index_batch(codec, paths: Sequence[str | os.PathLike]) -> tuple[list[int], np.ndarray, np.ndarray, dict[int, str]]:
    """Read the basic prefix of each file and decode its identity: (ok rows, embeddings [m, D],
    landmarks [m, 68, 2], {row: reason} for the others)."""
    from ..bitstream import read_basic_prefix
    from .identity import identity_batch

    streams: list[bytes] = []
    errors: dict[int, str] = {}
    for i, p in enumerate(paths):
        try:
            streams.append(read_basic_prefix(p))
        except StylecodecError as e:
            streams.append(b"")
            errors[i] = str(e)
    res = identity_batch(codec, streams)
    errors.update((i, r) for i, r in res.errors.items() if i not in errors)
    return res.ok, res.embeddings, res.landmarks, errors


# -- worker processes (spawned: torch + OpenMP are not fork-safe) --------------------------------
_WORKER: dict = {}


def _worker_init(model: str, threads: int) -> None:
    import torch

    from ..codec import Codec

    torch.set_num_threads(threads)
    _WORKER["codec"] = Codec.from_pretrained(model)


def _worker_batch(paths: list[str]):
    from .identity import identity_fingerprint

    return index_batch(_WORKER["codec"], paths), identity_fingerprint(_WORKER["codec"])


class _Decoder:
    """Runs :func:`index_batch` over batches in this process or in ``workers`` spawned processes,
    results in order."""

    def __init__(self, codec, workers: int):
        self.codec, self.pool, self.workers = codec, None, 1
        source = codec.loaded.source if codec.loaded is not None else None
        if workers > 1 and source is not None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"), initializer=_worker_init,
                                            initargs=(str(source), 1))
            self.workers = workers

    def map(self, batches: list[list[str]]):
        if self.pool is None:
            yield from (index_batch(self.codec, b) for b in batches)
            return
        from .identity import identity_fingerprint

        mine = identity_fingerprint(self.codec)
        for result, theirs in self.pool.map(_worker_batch, batches):
            if theirs != mine:                       # e.g. heads set on the codec, not in its file
                raise StylecodecError(f"the decoding processes load identity {theirs} from {self.codec.loaded.source}, "
                                      f"this codec has {mine}; use workers=1")
            yield result

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def _open_index(codec, path: Path, dtype: str | None, landmarks: bool | None) -> IdentityIndex:
    if path.exists():
        index = IdentityIndex.load(path, codec)
        if dtype is not None and dtype != index.dtype:
            raise StylecodecError(f"{path} stores {index.dtype} embeddings; leave out --dtype to extend it")
        if landmarks and not index.with_landmarks:
            raise StylecodecError(f"{path} keeps no landmarks; extend it without --landmarks or start a new index")
        return index
    return IdentityIndex.for_codec(codec, dtype or "float32", bool(landmarks))


def _select(names: list[str], shard: tuple[int, int] | None, limit: int | None) -> list[str]:
    from ..batch import select_shard

    names = names[:limit] if limit is not None else names
    return [n for _, n in select_shard(names, shard)]


def build_index(codec, srcs: Sequence[str | os.PathLike], index_path: str | os.PathLike, *,
                shard: tuple[int, int] | None = None, limit: int | None = None, batch_size: int = BATCH,
                save_every: float = SAVE_EVERY_S, progress: bool = True, dtype: str | None = None,
                landmarks: bool | None = None, streams_dir: str | os.PathLike | None = None, workers: int = 1,
                compress_codec=None, after_batch: Callable[[int], None] | None = None,
                stop: Callable[[], str | None] | None = None) -> dict:
    """Index ``srcs`` into ``index_path`` (created, or extended); see the module docstring.

    ``streams_dir``: where images are compressed to (default ``<index>.streams/<folder name>``);
    ``compress_codec``: the codec that compresses images (same model, with the wanted ``align``
    hook; default ``codec``); ``workers``: decoding processes (> 1 needs a model loaded from a
    file); ``after_batch(n_indexed_so_far)``: called after each batch (tests inject failures);
    ``stop()``: checked after each batch, a truthy value (e.g. a signal's name) saves and stops.
    Returns {"added", "already", "skipped", "merged", "entries", "skipped_total", "index",
    "stopped" (the value of ``stop()``, or None)}."""
    from tqdm import tqdm

    index_path = Path(index_path)
    if not srcs:
        raise StylecodecError("no SRC given")
    if batch_size < 1:
        raise StylecodecError(f"batch size must be >= 1, got {batch_size}")
    plans = []                                     # (source id or None, names, stream paths) per SRC
    index = _open_index(codec, index_path, dtype, landmarks)
    counts = {"added": 0, "already": 0, "skipped": 0, "merged": 0, "index": str(index_path), "stopped": None}
    for src in srcs:
        src = Path(src)
        if src.is_file():
            try:
                other = IdentityIndex.load(src)
            except IndexFileError as e:
                raise StylecodecError(f"SRC {src} is a file but not an identity index to merge ({e})") from None
            counts["merged"] += index.merge(other)
            continue
        if not src.is_dir():
            raise StylecodecError(f"SRC {src} does not exist")
        names = list_streams(src)
        if names:
            names = _select(names, shard, limit)
            sid = index.source_id(src, "sfc")
            plans.append((sid, names, [str(src / n) for n in names]))
            continue
        from ..batch import IMAGE_EXTS, find_images

        try:
            images = find_images(src)
        except StylecodecError:
            raise StylecodecError(f"SRC {src} holds no .sfc streams and no images ({', '.join(IMAGE_EXTS)})") from None
        out = Path(streams_dir) / src.name if streams_dir else index_path.with_name(index_path.name + ".streams") / src.name
        sid = index.source_id(src, "images", str(out.resolve()))
        names = _select(images, shard, limit)
        if any(not index.has(n, sid) for n in names):
            _compress_images(compress_codec or codec, src, out, shard, limit, progress)
        from ..batch import read_manifest, stream_path

        manifest = read_manifest(out)
        failed = {n: manifest[n].get("error") for n in names
                  if not index.has(n, sid) and manifest.get(n, {}).get("status") == "error"}
        for n, reason in failed.items():
            index.skip(n, sid, f"cannot compress the image: {reason}")
        counts["skipped"] += len(failed)
        names = [n for n in names if n not in failed]
        plans.append((sid, names, [str(stream_path(out, n)) for n in names]))

    work = []
    for sid, names, paths in plans:
        todo = [(n, p) for n, p in zip(names, paths) if not index.has(n, sid)]
        counts["already"] += len(names) - len(todo)
        work += [(sid, n, p) for n, p in todo]
    batches = [work[i:i + batch_size] for i in range(0, len(work), batch_size)]
    decoder = _Decoder(codec, workers if len(batches) > 1 else 1)
    counts["workers"] = decoder.workers
    last_save = time.monotonic()
    bar = tqdm(total=len(work), desc="index", unit="face", disable=not progress)
    try:
        for batch, (ok, emb, lm, errors) in zip(batches, decoder.map([[p for _, _, p in b] for b in batches])):
            for sid in sorted({batch[i][0] for i in ok}):
                rows = [j for j, i in enumerate(ok) if batch[i][0] == sid]
                index.add([batch[ok[j]][1] for j in rows], emb[rows], sid, lm[rows] if index.with_landmarks else None)
            counts["added"] += len(ok)
            for i, reason in errors.items():
                index.skip(batch[i][1], batch[i][0], reason)
            counts["skipped"] += len(errors)
            bar.update(len(batch))
            bar.set_postfix(added=counts["added"], skipped=counts["skipped"])
            if after_batch is not None:
                after_batch(counts["added"])
            counts["stopped"] = stop() if stop is not None else None
            if counts["stopped"]:
                break
            if time.monotonic() - last_save >= save_every:
                index.save(index_path)
                last_save = time.monotonic()
    except BaseException:
        bar.close()
        decoder.close()
        if index.consistent():
            index.save(index_path)                  # keep what was done (atomic), then stop
        raise
    bar.close()
    decoder.close()
    index.save(index_path)
    counts["entries"] = len(index)
    counts["skipped_total"] = len(index.skipped)
    return counts


def _compress_images(codec, src: Path, out: Path, shard, limit, progress: bool) -> None:
    """``stylecodec compress-dir SRC OUT`` with the codec's default rate (resumable)."""
    from ..batch import compress_dir

    compress_dir(codec, src, out, shard=shard, limit=limit, progress=progress)
