"""Closed-set identification: rank-k accuracy of probes against a gallery, and the LFW protocol.

    probes, gallery = lfw_split(image_names)          # every person with >= 2 images
    ranks = identity_ranks(P, probe_ids, G, gallery_ids)
    rank_accuracy(ranks, (1, 5))                       # {"rank1": ..., "rank5": ...}

Rank of a probe: 1 + the number of gallery identities whose best cosine (over their gallery
images) is strictly higher than the best cosine of the probe's own identity. Rank-k accuracy:
the share of probes of rank <= k.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..errors import StylecodecError

__all__ = ["identity_ranks", "rank_accuracy", "lfw_split", "lfw_person"]

_LFW_NAME = re.compile(r"^(?P<person>.+)_(?P<num>\d{4})\.[A-Za-z]+$")


def lfw_person(name: str) -> str:
    """'George_W_Bush_0012.jpg' (or 'dir/George_W_Bush_0012.jpg') -> 'George_W_Bush'."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    m = _LFW_NAME.match(base)
    if not m:
        raise StylecodecError(f"not an LFW image name (Person_Name_0001.jpg): {name!r}")
    return m.group("person")


def lfw_split(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(probes, gallery) image names: for every person with >= 2 images, the first image by name is
    the probe and the rest the gallery. Persons are in name order."""
    by_person: dict[str, list[str]] = {}
    for n in sorted(names):
        by_person.setdefault(lfw_person(n), []).append(n)
    probes, gallery = [], []
    for person in sorted(by_person):
        imgs = by_person[person]
        if len(imgs) >= 2:
            probes.append(imgs[0])
            gallery.extend(imgs[1:])
    return probes, gallery


def identity_ranks(probe_emb: np.ndarray, probe_ids: Sequence, gallery_emb: np.ndarray,
                   gallery_ids: Sequence) -> np.ndarray:
    """Rank (1-based, module docstring) of each probe's identity among the gallery identities;
    every probe's identity must be in the gallery. Embeddings: unit rows [n, D]."""
    p, g = np.asarray(probe_emb, np.float32), np.asarray(gallery_emb, np.float32)
    if p.ndim != 2 or g.ndim != 2 or p.shape[1] != g.shape[1] or len(p) != len(probe_ids) or len(g) != len(gallery_ids):
        raise StylecodecError(f"embeddings {list(p.shape)} / {list(g.shape)} do not match {len(probe_ids)} probes / "
                              f"{len(gallery_ids)} gallery ids")
    people = sorted(set(gallery_ids))
    col = {x: i for i, x in enumerate(people)}
    missing = sorted({x for x in probe_ids if x not in col}, key=str)
    if missing:
        raise StylecodecError(f"{len(missing)} probe identities have no gallery image (e.g. {missing[0]!r})")
    order = np.argsort([col[x] for x in gallery_ids], kind="stable")
    gid = np.asarray([col[x] for x in gallery_ids])[order]
    starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    scores = p @ g[order].T                                      # [n_probe, n_gallery]
    best = np.maximum.reduceat(scores, starts, axis=1)           # [n_probe, n_people]
    own = best[np.arange(len(p)), [col[x] for x in probe_ids]]
    return 1 + (best > own[:, None]).sum(1)


def rank_accuracy(ranks: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """{"rank{k}": share of ranks <= k} for each k."""
    ranks = np.asarray(ranks)
    return {f"rank{k}": float((ranks <= k).mean()) if len(ranks) else float("nan") for k in ks}
