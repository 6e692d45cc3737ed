"""The identity source of search: basic layers -> unit identity embeddings (and landmarks), no pixels.

    res = identity_batch(codec, streams)      # streams: full or basic-only .sfc bytes
    res.embeddings   # float32 [n_ok, D] unit vectors, D = identity_dim(codec)
    res.landmarks    # float32 [n_ok, 68, 2] pixels of the R x R face
    res.ok           # indexes into ``streams`` of the rows above
    res.errors       # {index: one-line reason} for the streams that could not be read

:func:`identity_batch` is the ONE place that decides what "identity" means for ``Codec.identity``,
``stylecodec index`` and ``stylecodec search``: today the model's analysis heads
(:mod:`stylecodec.analysis.heads`) on the decoded basic latent ŷ_basic. A model whose basic
layer carries another identity (e.g. a head regressing SFace's 128-d embedding) needs no change
here as long as it ships as analysis heads; another source is plugged in here, and
:data:`IDENTITY_VERSION` is bumped so that indexes written by the old one are refused.

Decoding is batched (:meth:`stylecodec.codec.Codec.decode_basic_batch`, on
:meth:`~stylecodec.entropy.coder.GroupCoder.decompress_batch`): the basic layers of many streams
are entropy-decoded in lockstep, with one LSET cursor of batch n (the LSET runs once per token for
the whole batch; rows are independent, and the float64 path is exact, so each row equals
``Codec.decode_y(stream, "basic")`` bit for bit: ``tests/test_search.py`` checks it), one stream
decoder per row.
Only the header and the basic layer of each stream are read (``basic_prefix``); bytes after it
are never looked at. A damaged or foreign-model stream fails alone (its reason in ``errors``).
"""
from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..analysis.heads import landmarks_to_pixels
from ..bitstream import basic_prefix

__all__ = ["IdentityBatch", "identity_batch", "identity_dim", "identity_fingerprint", "decode_basic_batch",
           "IDENTITY_VERSION", "IDENTITY_SOURCE"]

# Bump when what identity_batch computes changes for the same model (indexes record it).
IDENTITY_VERSION = 1
IDENTITY_SOURCE = "analysis heads on the decoded basic layer (stylecodec.analysis.heads)"


@dataclass
class IdentityBatch:
    """What :func:`identity_batch` returns (module docstring)."""

    embeddings: np.ndarray
    landmarks: np.ndarray
    ok: list[int]
    errors: dict[int, str] = field(default_factory=dict)
    bytes_read: list[int] = field(default_factory=list)     # per row of ``embeddings``


def decode_basic_batch(codec, streams: Sequence[bytes], with_pred: bool = False
                       ) -> tuple[list[torch.Tensor], list[int], dict[int, str]]:
    """Batched ``Codec.decode_y(stream, "basic")``: (y_hat, ok, errors). y_hat: [ŷ_basic [m, d_0]
    float32] (+ the LSET predictions of the higher layers [m, d_l] when ``with_pred``) for the m
    streams listed in ``ok`` (indexes into ``streams``); ``errors``: index -> reason for the others.
    :meth:`stylecodec.codec.Codec.decode_basic_batch` (one LSET pass for the batch:
    :meth:`~stylecodec.entropy.coder.GroupCoder.decompress_batch`)."""
    return codec.decode_basic_batch(streams, predict=with_pred)


@torch.no_grad()
def identity_batch(codec, streams: Sequence[bytes]) -> IdentityBatch:
    """Identity embeddings (unit float32) and landmarks of the basic layers of ``streams``; see the
    module docstring. Raises :class:`~stylecodec.analysis.heads.HeadsError` when the model has no
    analysis heads; a stream that cannot be read is reported in ``errors``, never raised."""
    heads = codec.analysis_heads()
    y_hat, ok, errors = decode_basic_batch(codec, streams, with_pred=heads.inputs != "basic")
    dim = identity_dim(codec)
    if not ok:
        return IdentityBatch(np.zeros((0, dim), np.float32), np.zeros((0, 68, 2), np.float32), [], errors)
    out = heads(heads.features(y_hat))
    emb = out["identity"].detach().to("cpu", torch.float64)
    norm = emb.norm(dim=1, keepdim=True)
    emb = (emb / norm.clamp_min(1e-12)).float().numpy()
    lm = landmarks_to_pixels(out["landmarks"].detach().float().cpu().numpy(), codec.resolution).astype(np.float32)
    good = np.isfinite(emb).all(1) & (norm[:, 0].numpy() > 0)
    for j in np.flatnonzero(~good):
        errors[ok[j]] = "the identity head returned a zero or non-finite embedding"
    prefix_bytes = [len(basic_prefix(streams[i])) for i in ok]
    keep = np.flatnonzero(good)
    return IdentityBatch(np.ascontiguousarray(emb[keep]), lm[keep], [ok[j] for j in keep], errors,
                         [prefix_bytes[j] for j in keep])


def _heads_facts(heads) -> tuple[int, str]:
    """(identity dimension, sha256 prefix of the weights) of an analysis-heads module, computed once."""
    facts = _FACTS.get(heads)
    if facts is None:
        with torch.no_grad():
            dim = int(heads(torch.zeros(1, heads.input_dim))["identity"].shape[1])
        h = hashlib.sha256()
        for name, t in sorted(heads.state_dict().items()):
            t = t.detach().to("cpu", torch.float32).contiguous()
            h.update(f"{name}{tuple(t.shape)}".encode() + t.numpy().astype("<f4").tobytes())
        facts = _FACTS[heads] = (dim, h.hexdigest())
    return facts


_FACTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def identity_dim(codec) -> int:
    """The dimension of this model's identity embeddings (what its heads return)."""
    return _heads_facts(codec.analysis_heads())[0]


def identity_fingerprint(codec) -> str:
    """Names everything the embeddings depend on besides the stream: the codec (its 16-bit
    fingerprint, as in the streams), the analysis heads' weights and :data:`IDENTITY_VERSION`, as
    ``"<codec fingerprint, 4 hex>-<16 hex>"``. Indexes store it; a search with another is refused."""
    digest = _heads_facts(codec.analysis_heads())[1]
    h = hashlib.sha256(f"identity-v{IDENTITY_VERSION}|codec {codec.fingerprint:04x}|heads {digest}".encode())
    return f"{codec.fingerprint:04x}-{h.hexdigest()[:16]}"
