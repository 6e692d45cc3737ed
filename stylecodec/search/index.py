"""An identity index: unit embeddings of coded faces, their names, and the model that made them.

    index = IdentityIndex.for_codec(codec)                      # empty, bound to this model
    index.add(["a.sfc", "b.sfc"], embeddings, source="/data/faces")
    index.save("faces.sfi")                                     # atomic (temporary file + rename)
    index = IdentityIndex.load("faces.sfi", codec=codec)        # refused for another model
    hits = index.search(query, k=5)                             # [[Hit(name, score, ...), ...]]
    index.remove(["b.sfc"])

An entry is keyed by (source, name): ``source`` is the folder it was indexed from (absolute path,
kept once in the header), ``name`` its path below it. Keys are unique: adding one again is an
error unless ``replace=True``; that is what makes an interrupted ``stylecodec index`` resume
without losing or duplicating anything.

File format, version 1 (``.sfi``): a NumPy ``.npz`` archive (zip, stored, CRC-32 per member; read
with ``allow_pickle=False``) of

=================  ==================  ===========================================================
member             dtype [shape]       content
=================  ==================  ===========================================================
``header``         uint8 [h]           UTF-8 JSON: ``format`` = "stylecodec-identity-index",
                                       ``version`` = 1, ``dim`` D, ``dtype`` of the embeddings,
                                       ``count`` N, ``model_fingerprint`` (the codec's 16-bit
                                       fingerprint, "0x...": the one in its streams),
                                       ``identity_fingerprint`` (codec + heads weights + identity
                                       version: :func:`stylecodec.search.identity.identity_fingerprint`),
                                       ``resolution``, ``identity_source``, ``sources`` [{path, kind
                                       "sfc"|"images", streams}], ``skipped`` [{source, name,
                                       reason}], ``landmarks`` (bool), ``stylecodec`` (version)
``embeddings``     float32|float16     unit identity embeddings, row i = entry i
                   [N, D]
``name_offsets``   int64 [N + 1]       entry i's name is ``names_utf8[off[i]:off[i+1]]`` (UTF-8)
``names_utf8``     uint8 [B]           the names, concatenated
``source_ids``     uint16 [N]          entry i's index into ``header.sources``
``landmarks``      float16 [N, 68, 2]  only when ``header.landmarks``: pixels of the R x R face
=================  ==================  ===========================================================

A reader refuses another ``format``, a newer ``version``, inconsistent shapes or a failed CRC
(:class:`IndexFileError`, one line). Size per face: 4·D (float32) or 2·D (float16) bytes of
embedding + 2 + the name's bytes + 8 (offset) + zip overhead amortised to ~0
(``experiments/bench_search.py`` measures it).
"""
from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import StylecodecError

__all__ = ["IdentityIndex", "IndexFileError", "Hit", "FORMAT", "VERSION", "DTYPES"]

FORMAT, VERSION = "stylecodec-identity-index", 1
DTYPES = ("float32", "float16")
MAX_SOURCES = 65535


class IndexFileError(StylecodecError):
    """An index file cannot be read, or does not belong to the model it is used with."""


@dataclass(frozen=True)
class Hit:
    """One search result: the entry's name, its folder (source), cosine score, row in the index."""

    name: str
    score: float
    source: str
    row: int

    @property
    def path(self) -> str:
        return os.path.join(self.source, self.name) if self.source else self.name


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class IdentityIndex:
    """Embeddings + names + the model's fingerprints; see the module docstring."""

    def __init__(self, dim: int, model_fingerprint: int, identity_fingerprint: str, dtype: str = "float32",
                 resolution: int | None = None, landmarks: bool = False, meta: dict | None = None):
        if dtype not in DTYPES:
            raise StylecodecError(f"index dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if not int(dim) > 0:
            raise StylecodecError(f"embedding dimension must be > 0, got {dim!r}")
        self.dim, self.dtype = int(dim), dtype
        self.model_fingerprint, self.identity_fingerprint = int(model_fingerprint), str(identity_fingerprint)
        self.resolution, self.with_landmarks = resolution, bool(landmarks)
        self.meta = dict(meta or {})
        self.sources: list[dict] = []
        self.skipped: dict[tuple[int, str], str] = {}
        self._emb: list[np.ndarray] = []            # chunks, joined on demand
        self._lm: list[np.ndarray] = []
        self._names_list: list[str] | None = []
        self._blob: tuple[bytes, np.ndarray] | None = None    # names as read, decoded on first need
        self._src: list[int] = []
        self._keys_dict: dict[tuple[int, str], int] | None = {}
        self._backend = None

    # names and keys of an index read from a file are built on first use: a search needs only the
    # names of its hits (a 10^6-entry index then loads in the time of reading its arrays)
    @property
    def _names(self) -> list[str]:
        if self._names_list is None:
            raw, off = self._blob
            self._names_list = [raw[a:b].decode("utf-8") for a, b in zip(off[:-1].tolist(), off[1:].tolist())]
            self._blob = None
        return self._names_list

    @_names.setter
    def _names(self, names: list[str]) -> None:
        self._names_list, self._blob = list(names), None

    @property
    def _keys(self) -> dict[tuple[int, str], int]:
        if self._keys_dict is None:
            self._keys_dict = {(s, n): i for i, (s, n) in enumerate(zip(self._src, self._names))}
            if len(self._keys_dict) != len(self._src):
                raise IndexFileError("the index file lists an entry twice: damaged")
        return self._keys_dict

    @_keys.setter
    def _keys(self, keys: dict[tuple[int, str], int]) -> None:
        self._keys_dict = keys

    def _name(self, i: int) -> str:
        if self._names_list is not None:
            return self._names_list[i]
        raw, off = self._blob
        return raw[off[i]:off[i + 1]].decode("utf-8")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def for_codec(cls, codec, dtype: str = "float32", landmarks: bool = False) -> "IdentityIndex":
        """An empty index for ``codec``'s identity embeddings (dimension from its heads)."""
        from .identity import IDENTITY_SOURCE, IDENTITY_VERSION, identity_dim, identity_fingerprint

        return cls(identity_dim(codec), codec.fingerprint, identity_fingerprint(codec), dtype, codec.resolution,
                   landmarks, {"identity_source": IDENTITY_SOURCE, "identity_version": IDENTITY_VERSION})

    def source_id(self, path: str | os.PathLike | None, kind: str = "sfc", streams: str | None = None) -> int:
        """The id of folder ``path`` (absolute; registered on first use). None: names are used as given."""
        p = "" if path is None else os.path.abspath(os.fspath(path))
        for i, s in enumerate(self.sources):
            if s["path"] == p:
                if streams and not s.get("streams"):
                    s["streams"] = streams
                return i
        if len(self.sources) >= MAX_SOURCES:
            raise StylecodecError(f"an index holds at most {MAX_SOURCES} source folders")
        self.sources.append({"path": p, "kind": kind, "streams": streams})
        return len(self.sources) - 1

    # -- content ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._src)

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def paths(self) -> list[str]:
        return [os.path.join(self.sources[s]["path"], n) if self.sources[s]["path"] else n
                for n, s in zip(self._names, self._src)]

    def has(self, name: str, source: int) -> bool:
        """Whether ``name`` of source id ``source`` is in the index."""
        return (int(source), str(name)) in self._keys

    @property
    def embeddings(self) -> np.ndarray:
        """[N, D] in the storage dtype (the chunks joined once)."""
        if len(self._emb) != 1:
            self._emb = [np.concatenate(self._emb) if self._emb else np.zeros((0, self.dim), self.dtype)]
        return self._emb[0]

    @property
    def landmarks(self) -> np.ndarray | None:
        if not self.with_landmarks:
            return None
        if len(self._lm) != 1:
            self._lm = [np.concatenate(self._lm) if self._lm else np.zeros((0, 68, 2), np.float16)]
        return self._lm[0]

    def add(self, names: Sequence[str], embeddings: np.ndarray, source: str | os.PathLike | int | None = None,
            landmarks: np.ndarray | None = None, replace: bool = False) -> None:
        """Append entries: ``names`` [n] below ``source`` (a folder, a source id, or None), unit
        ``embeddings`` [n, D]; ``landmarks`` [n, 68, 2] when the index keeps them. A key already
        present raises StylecodecError, unless ``replace`` (then the old entry is removed)."""
        emb = np.asarray(embeddings)
        if emb.ndim != 2 or emb.shape != (len(names), self.dim):
            raise StylecodecError(f"embeddings must be [{len(names)}, {self.dim}], got {list(emb.shape)}")
        if not np.isfinite(emb).all():
            raise StylecodecError("embeddings must be finite")
        if self.with_landmarks and (landmarks is None or np.shape(landmarks) != (len(names), 68, 2)):
            raise StylecodecError(f"this index keeps landmarks: give [{len(names)}, 68, 2]")
        sid = source if isinstance(source, int) else self.source_id(source)
        if not 0 <= sid < len(self.sources):
            raise StylecodecError(f"no source {sid} in this index")
        keys = [(sid, str(n)) for n in names]
        if len(set(keys)) != len(keys):
            raise StylecodecError("the same name is given twice")
        old = [k for k in keys if k in self._keys]
        if old and not replace:
            raise StylecodecError(f"{len(old)} entries are already in the index (e.g. {old[0][1]!r}); "
                                  "pass replace=True to replace them")
        if old:
            self._remove_keys(old)
        start = len(self._names)
        self._emb.append(emb.astype(self.dtype))
        if self.with_landmarks:
            self._lm.append(np.asarray(landmarks).astype(np.float16))
        self._names.extend(k[1] for k in keys)
        self._src.extend([sid] * len(keys))
        self._keys.update((k, start + i) for i, k in enumerate(keys))
        for k in keys:
            self.skipped.pop(k, None)
        self._backend = None

    def skip(self, name: str, source: int, reason: str) -> None:
        """Record that ``name`` (of source id ``source``) could not be indexed, and why."""
        self.skipped[(int(source), str(name))] = " ".join(str(reason).split())[:500]

    def remove(self, names: Iterable[str], source: str | os.PathLike | int | None = None) -> int:
        """Remove entries by name (of ``source``: a folder or id; None: in any source). Returns how
        many were removed."""
        wanted = set(map(str, names))
        if source is None:
            keys = [k for k in self._keys if k[1] in wanted]
        else:
            sid = source if isinstance(source, int) else self.source_id(source)
            keys = [(sid, n) for n in wanted if (sid, n) in self._keys]
        self._remove_keys(keys)
        return len(keys)

    def _remove_keys(self, keys: Sequence[tuple[int, str]]) -> None:
        if not keys:
            return
        drop = np.zeros(len(self._names), bool)
        drop[[self._keys[k] for k in keys]] = True
        keep = np.flatnonzero(~drop)
        self._emb = [self.embeddings[keep]]
        if self.with_landmarks:
            self._lm = [self.landmarks[keep]]
        self._names = [self._names[i] for i in keep]
        self._src = [self._src[i] for i in keep]
        self._keys = {(s, n): i for i, (s, n) in enumerate(zip(self._src, self._names))}
        self._backend = None

    def merge(self, other: "IdentityIndex", replace: bool = False) -> int:
        """Add every entry (and skipped record) of ``other``, an index of the same model. Returns the
        number of entries added."""
        self.check_same_model(other.model_fingerprint, other.identity_fingerprint, other.dim, "the other index")
        if self.with_landmarks and not other.with_landmarks:
            raise StylecodecError("cannot merge an index without landmarks into one that keeps them")
        ids = [self.source_id(s["path"] or None, s.get("kind", "sfc"), s.get("streams")) for s in other.sources]
        added = 0
        for sid_other, sid in enumerate(ids):
            rows = [i for i, s in enumerate(other._src) if s == sid_other]
            names = [other._names[i] for i in rows]
            if not replace:
                rows = [i for i, n in zip(rows, names) if (sid, n) not in self._keys]
                names = [other._names[i] for i in rows]
            if rows:
                lm = other.landmarks[rows] if self.with_landmarks else None
                self.add(names, other.embeddings[rows].astype(np.float32), sid, lm, replace=replace)
                added += len(rows)
        for (s, n), reason in other.skipped.items():
            if (ids[s], n) not in self._keys:
                self.skipped[(ids[s], n)] = reason
        return added

    # -- compatibility ------------------------------------------------------------------------
    def check_same_model(self, model_fingerprint: int, identity_fingerprint: str, dim: int | None = None,
                         what: str = "this model") -> None:
        """IndexFileError unless embeddings from ``what`` are comparable with this index's."""
        if int(model_fingerprint) != self.model_fingerprint:
            raise IndexFileError(f"the index was written by model 0x{self.model_fingerprint:04x}, {what} is "
                                 f"0x{int(model_fingerprint):04x}: its embeddings are not comparable; rebuild the "
                                 f"index with `stylecodec index` and this model")
        if identity_fingerprint != self.identity_fingerprint:
            raise IndexFileError(f"the index was written with other identity heads or identity source "
                                 f"({self.identity_fingerprint}) than {what} ({identity_fingerprint}); rebuild it")
        if dim is not None and int(dim) != self.dim:
            raise IndexFileError(f"the index holds {self.dim}-d embeddings, {what} makes {dim}-d ones")

    def check_codec(self, codec) -> None:
        from .identity import identity_dim, identity_fingerprint

        self.check_same_model(codec.fingerprint, identity_fingerprint(codec), identity_dim(codec),
                              f"model 0x{codec.fingerprint:04x}")

    # -- search -------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 5, backend: str = "auto", threads: int | None = None
               ) -> list[list[Hit]]:
        """Top-``k`` entries by cosine for each query ([D] or [m, D] unit vectors): a list per query.
        ``backend``: "auto", "faiss" or "numpy" (:func:`stylecodec.search.backend.make_backend`);
        ``threads``: faiss's threads (default 1)."""
        from .backend import make_backend

        q = np.asarray(queries, np.float32)
        single = q.ndim == 1
        if self._backend is None or (backend != "auto" and self._backend.name != backend):
            self._backend = make_backend(self.embeddings.astype(np.float32, copy=False), backend, threads)
        if threads is not None and hasattr(self._backend, "threads"):
            self._backend.threads = int(threads)
        scores, ids = self._backend.search(q, k)
        out = [[Hit(self._name(j), float(s), self.sources[self._src[j]]["path"], int(j))
                for s, j in zip(srow, irow) if j >= 0] for srow, irow in zip(scores, ids)]
        return out[:1] if single else out

    @property
    def backend(self) -> str | None:
        return None if self._backend is None else self._backend.name

    # -- file ---------------------------------------------------------------------------------
    def header(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "dim": self.dim, "dtype": self.dtype, "count": len(self),
                "model_fingerprint": f"0x{self.model_fingerprint:04x}",
                "identity_fingerprint": self.identity_fingerprint, "resolution": self.resolution,
                "landmarks": self.with_landmarks, "sources": self.sources,
                "skipped": [{"source": s, "name": n, "reason": r} for (s, n), r in sorted(self.skipped.items())],
                "meta": self.meta, "stylecodec": _version(), "updated": _now()}

    def consistent(self) -> bool:
        """Whether names, sources, embeddings (and landmarks) have one row per entry (an exception
        raised inside :meth:`add` may leave them otherwise; :meth:`save` refuses then)."""
        n = len(self._src)
        names = len(self._names_list) if self._names_list is not None else len(self._blob[1]) - 1
        keys = len(self._keys_dict) if self._keys_dict is not None else n
        return (names == n == keys == sum(len(e) for e in self._emb)
                and (not self.with_landmarks or sum(len(x) for x in self._lm) == n))

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to ``path`` atomically (a temporary file beside it, then rename)."""
        from ..files import write_npz

        if not self.consistent():
            raise StylecodecError(f"not saving {path}: the index in memory is inconsistent (interrupted update)")

        if self._blob is not None:                      # names as read: written back as they are
            raw, offsets = self._blob
        else:
            blob = [n.encode("utf-8") for n in self._names]
            offsets = np.zeros(len(blob) + 1, np.int64)
            np.cumsum([len(b) for b in blob], out=offsets[1:])
            raw = b"".join(blob)
        arrays = {"header": np.frombuffer(json.dumps(self.header()).encode("utf-8"), np.uint8),
                  "embeddings": np.ascontiguousarray(self.embeddings),
                  "name_offsets": offsets,
                  "names_utf8": np.frombuffer(raw, np.uint8),
                  "source_ids": np.asarray(self._src, np.uint16)}
        if self.with_landmarks:
            arrays["landmarks"] = np.ascontiguousarray(self.landmarks)
        write_npz(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, codec=None) -> "IdentityIndex":
        """Read an index file; with ``codec``, also refuse it unless that model wrote it
        (:meth:`check_codec`). Raises :class:`IndexFileError` (one line) for a damaged file."""
        path = Path(path)
        if not path.is_file():
            raise IndexFileError(f"index file {path} does not exist")
        try:
            index = cls._read(path)
        except IndexFileError:
            raise
        except Exception as e:  # noqa: BLE001  any failure to parse is a damaged file
            raise IndexFileError(f"{path}: damaged or not a stylecodec index file "
                                 f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
        if codec is not None:
            try:
                index.check_codec(codec)
            except IndexFileError as e:
                raise IndexFileError(f"{path}: {e}") from None
        return index

    @classmethod
    def _read(cls, path: Path) -> "IdentityIndex":
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise ValueError("no .npz (zip) signature")
            fh.seek(0)
            head, emb, offsets, blob, src, lm = cls._read_arrays(path, fh)
        return cls._from_arrays(head, emb, offsets, blob, src, lm)

    @classmethod
    def _read_arrays(cls, path: Path, fh) -> tuple:
        with np.load(fh, allow_pickle=False) as z:
            head = json.loads(bytes(z["header"]).decode("utf-8"))
            if not isinstance(head, dict) or head.get("format") != FORMAT:
                raise IndexFileError(f"{path} is not a stylecodec identity index (format {head.get('format')!r})"
                                     if isinstance(head, dict) else f"{path} is not a stylecodec identity index")
            if head.get("version") != VERSION:
                newer = " (newer than this reader; upgrade stylecodec)" if int(head.get("version", 0)) > VERSION else ""
                raise IndexFileError(f"{path}: index format version {head.get('version')!r}{newer}; this reads "
                                     f"version {VERSION}")
            emb, offsets, blob, src = z["embeddings"], z["name_offsets"], z["names_utf8"], z["source_ids"]
            lm = z["landmarks"] if head.get("landmarks") else None
        return head, emb, offsets, blob, src, lm

    @classmethod
    def _from_arrays(cls, head: dict, emb, offsets, blob, src, lm) -> "IdentityIndex":
        n, dim = int(head["count"]), int(head["dim"])
        if (emb.shape != (n, dim) or emb.dtype != np.dtype(head["dtype"]) or offsets.shape != (n + 1,)
                or src.shape != (n,) or (lm is not None and lm.shape != (n, 68, 2))):
            raise ValueError(f"shapes do not match the header (count {n}, dim {dim})")
        if offsets[0] != 0 or offsets[-1] != len(blob) or (np.diff(offsets) < 0).any():
            raise ValueError("name offsets are inconsistent")
        sources = list(head["sources"])
        if n and int(src.max()) >= len(sources):
            raise ValueError("a source id points past the sources list")
        if not np.isfinite(emb).all():
            raise ValueError("non-finite embeddings")
        index = cls(dim, int(str(head["model_fingerprint"]), 16), head["identity_fingerprint"], head["dtype"],
                    head.get("resolution"), bool(head.get("landmarks")), head.get("meta"))
        index.sources = [dict(s) for s in sources]
        index._names_list, index._blob, index._keys_dict = None, (blob.tobytes(), offsets), None
        index._src = src.astype(int).tolist()
        index._emb = [emb]
        if lm is not None:
            index._lm = [lm]
        index.skipped = {(int(s["source"]), str(s["name"])): str(s["reason"]) for s in head.get("skipped", [])}
        return index

    def info(self) -> dict:
        """Summary for messages and --json."""
        return {"entries": len(self), "dim": self.dim, "dtype": self.dtype, "skipped": len(self.skipped),
                "model_fingerprint": f"0x{self.model_fingerprint:04x}", "identity_fingerprint": self.identity_fingerprint,
                "sources": [s["path"] for s in self.sources]}


def _version() -> str:
    from .. import __version__
    return __version__
