"""Exact top-K by inner product (= cosine: the embeddings are unit vectors).

    backend = make_backend(embeddings)              # "auto": faiss for large indexes, else numpy
    scores, ids = backend.search(queries, k)        # [m, k] float32, [m, k] int64 (-1: none)

``faiss`` (faiss-cpu, optional): ``IndexFlatIP``, exact (a full scan, SIMD); several times faster
than numpy per probe at 10^6 entries (``experiments/bench_search.py``). ``numpy``: one matrix-vector
product and ``argpartition`` per probe; no extra dependency, and quicker to start for small
indexes. Both return the same neighbours and scores up to float32 rounding (numpy orders ties by
row; faiss's order of exact ties is its own).
"""
from __future__ import annotations

import numpy as np

from ..errors import StylecodecError

__all__ = ["BACKENDS", "FAISS_MIN_ENTRIES", "NumpyBackend", "FaissBackend", "make_backend", "faiss_available"]

BACKENDS = ("auto", "faiss", "numpy")
# "auto" takes faiss from this many entries (below it numpy is as fast and faiss's import is not paid)
FAISS_MIN_ENTRIES = 20_000
# faiss searches on this many threads unless told otherwise: one probe over 10^6 entries is a memory-
# bound scan, and OpenMP threads that wait on busy cores made it 6x slower on the 2-core machine
# (experiments/bench_search.py: 35 ms on 1 thread, 203 ms on 2, beside other jobs)
FAISS_THREADS = 1


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _queries(q: np.ndarray, dim: int) -> np.ndarray:
    q = np.asarray(q, np.float32)
    q = q[None] if q.ndim == 1 else q
    if q.ndim != 2 or q.shape[1] != dim:
        raise StylecodecError(f"queries must be [m, {dim}], got {list(q.shape)}")
    return np.ascontiguousarray(q)


class NumpyBackend:
    name = "numpy"

    def __init__(self, embeddings: np.ndarray):
        self.x = np.ascontiguousarray(embeddings, np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _queries(queries, self.x.shape[1])
        n, m = self.x.shape[0], q.shape[0]
        k = max(0, min(int(k), n))
        scores = np.full((m, k), -np.inf, np.float32)
        ids = np.full((m, k), -1, np.int64)
        if not k:
            return scores, ids
        for i in range(m):
            s = self.x @ q[i]
            top = np.argpartition(-s, k - 1)[:k] if k < n else np.arange(n)
            top = top[np.lexsort((top, -s[top]))]          # by score, ties by index
            scores[i], ids[i] = s[top], top
        return scores, ids


class FaissBackend:
    name = "faiss"

    def __init__(self, embeddings: np.ndarray, threads: int | None = None):
        import faiss

        x = np.ascontiguousarray(embeddings, np.float32)
        self.faiss, self.threads = faiss, int(threads or FAISS_THREADS)
        self.index = faiss.IndexFlatIP(x.shape[1])
        self.index.add(x)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _queries(queries, self.index.d)
        k = max(0, min(int(k), self.index.ntotal))
        if not k:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        before = self.faiss.omp_get_max_threads()
        self.faiss.omp_set_num_threads(self.threads)
        try:
            scores, ids = self.index.search(q, k)
        finally:
            self.faiss.omp_set_num_threads(before)
        return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)


def make_backend(embeddings: np.ndarray, backend: str = "auto", threads: int | None = None):
    """A backend over ``embeddings`` [n, d] (unit float32 rows): "faiss", "numpy" or "auto" (faiss when
    installed and n >= :data:`FAISS_MIN_ENTRIES`). Asking for faiss without it is an error.
    ``threads``: faiss's threads (default :data:`FAISS_THREADS`); numpy's BLAS threads are set by
    ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` when numpy loads."""
    if backend not in BACKENDS:
        raise StylecodecError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "faiss" and not faiss_available():
        raise StylecodecError("the faiss backend needs faiss-cpu (pip install faiss-cpu==1.15.1, or "
                              "pip install 'stylecodec[search]'); --backend numpy works without it")
    if backend == "faiss" or (backend == "auto" and len(embeddings) >= FAISS_MIN_ENTRIES and faiss_available()):
        return FaissBackend(embeddings, threads)
    return NumpyBackend(embeddings)
