"""Machine analysis from the basic layer alone: 68 landmarks and an identity embedding, no pixels.

Input (``AnalysisHeads.inputs``):

- ``"basic"`` (default): ŷ_basic [N, d_basic], the decoded, dequantised basic-layer latent
  exactly as :meth:`stylecodec.codec.Codec.decode_y` returns it (``ŷ_c · inv_gain``, the
  synthesis input; unscaled domain).
- ``"basic+pred"``: ŷ_basic followed by the LSET's greedy means of the middle and enhanced
  layers predicted from it (what the decoder uses for missing layers) -- still a function of
  the basic layer only; more features, no more information.

Outputs: ``landmarks`` [N, 68, 2], (x, y) normalised to [0, 1] over the aligned R x R image
(pixel = u·R − 0.5; dlib 68-point iBUG order), and ``identity`` [N, 512] L2-normalised,
trained to match the facenet CASIA-WebFace teacher embedding of the original aligned face.

Storage (keeps the codec's fingerprint, so streams stay valid): the heads live in the model
checkpoint file under a top-level ``"heads"`` entry, next to (never inside) the fingerprinted
``state_dict``::

    ck["heads"] = {"format": "stylecodec-heads", "version": 1, "config": {...},
                   "state_dict": {...}, "codec_fingerprint": u16, "meta": {...}}

``codec_fingerprint`` names the codec whose ŷ_basic the heads were trained on; loading them
for another codec is refused. ``zoo.load_model`` keeps the entry as ``model.heads_entry`` (so
``zoo.save_model`` writes it back); :func:`heads_for` builds the heads from it.
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..bitstream import BitstreamError, basic_prefix, unpack
from ..errors import StylecodecError

__all__ = ["AnalysisHeads", "HeadsError", "INPUTS", "HEADS_FORMAT", "HEADS_VERSION", "decoded_inputs", "heads_checkpoint", "save_heads_into", "heads_from_entry",
           "load_heads", "heads_for", "analyze_stream", "landmarks_to_pixels", "pixels_to_landmarks"]

HEADS_FORMAT, HEADS_VERSION = "stylecodec-heads", 1
INPUTS = ("basic", "basic+pred")
N_POINTS = 68


class HeadsError(StylecodecError):
    """A model has no analysis heads, or its heads do not belong to it."""


def _mlp(d_in: int, hidden: int, depth: int, d_out: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else hidden, hidden), nn.GELU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden if depth else d_in, d_out))
    return nn.Sequential(*layers)


class AnalysisHeads(nn.Module):
    """Two small MLPs on standardised basic-layer features: landmarks and identity.

    basic_dim: d_basic; pred_dim: summed size of the predicted higher layers (0 = inputs
    "basic"); hidden / depth: MLP width and hidden-layer count; embed_dim: identity size.
    Buffers ``in_mean`` / ``in_std`` [basic_dim + pred_dim] standardise the features (set by the
    trainer from training data); ``mean_shape`` [68, 2] is the landmark output at init.
    """

    def __init__(self, basic_dim: int, pred_dim: int = 0, hidden: int = 512, depth: int = 3,
                 embed_dim: int = 512, dropout: float = 0.0):
        super().__init__()
        self.config = {"basic_dim": int(basic_dim), "pred_dim": int(pred_dim), "hidden": int(hidden),
                       "depth": int(depth), "embed_dim": int(embed_dim), "dropout": float(dropout)}
        d_in = basic_dim + pred_dim
        self.register_buffer("in_mean", torch.zeros(d_in))
        self.register_buffer("in_std", torch.ones(d_in))
        self.register_buffer("mean_shape", torch.full((N_POINTS, 2), 0.5))
        self.landmark_mlp = _mlp(d_in, hidden, depth, 2 * N_POINTS, dropout)
        self.identity_mlp = _mlp(d_in, hidden, depth, embed_dim, dropout)
        nn.init.zeros_(self.landmark_mlp[-1].weight)
        nn.init.zeros_(self.landmark_mlp[-1].bias)

    @property
    def inputs(self) -> str:
        return "basic+pred" if self.config["pred_dim"] else "basic"

    def features(self, y_hat: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decoder latents [ŷ_basic, ŷ_middle, ŷ_enhanced] (each [N, d_l]; the higher ones LSET
        predictions) -> head input [N, basic_dim (+ pred_dim)] on the heads' device."""
        parts = list(y_hat) if self.config["pred_dim"] else [y_hat[0]]
        x = torch.cat([p.float() for p in parts], 1).to(self.in_mean.device)
        if x.shape[1] != self.in_mean.numel():
            raise HeadsError(f"the heads take {self.in_mean.numel()} features, the codec gives {x.shape[1]}")
        return x

    @torch.no_grad()
    def set_input_stats(self, feats: torch.Tensor) -> None:
        """Standardise by the per-feature mean / std of ``feats`` [M, d_in]."""
        self.in_mean.copy_(feats.float().mean(0))
        self.in_std.copy_(feats.float().std(0).clamp_min(1e-6))

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """feats [N, d_in] -> {"landmarks": [N, 68, 2] normalised, "identity": [N, embed_dim] unit}."""
        x = (feats.float() - self.in_mean) / self.in_std
        lm = self.mean_shape + self.landmark_mlp(x).view(-1, N_POINTS, 2)
        emb = nn.functional.normalize(self.identity_mlp(x), dim=1, eps=1e-8)
        return {"landmarks": lm, "identity": emb}


# -------------------------------------------------------------------- coordinates
def landmarks_to_pixels(lm, resolution: int):
    """Normalised [0, 1] coordinates -> pixels of a resolution x resolution image (u·R − 0.5)."""
    return lm * resolution - 0.5


def pixels_to_landmarks(px, resolution: int):
    """Pixels of a resolution x resolution image -> normalised coordinates ((p + 0.5) / R)."""
    return (px + 0.5) / resolution


# -------------------------------------------------------------------- training-side decoding
@torch.no_grad()
def decoded_inputs(model, y_basic: torch.Tensor, quality, with_pred: bool = False) -> list[torch.Tensor]:
    """What a decoder of the basic layer gets, emulated on a batch (float32, model's device):
    [ŷ_basic [N, d_0]] (+ LSET-predicted means of the higher layers when ``with_pred``).

    y_basic: unscaled basic latents y_0 [N, d_0]; quality: int or int64 [N]. Rounds group by
    group around the snapped LSET mean like the coder (``quant="ste"`` of the model), so it
    matches :meth:`Codec.decode_y` up to float32-vs-float64 snapping of rare boundary cases.
    """
    n, dev = y_basic.shape[0], model.gain.device
    g, gi = model.gains(torch.as_tensor(quality, device=dev), n)
    coder = model.coder
    context = coder([y_basic.to(dev, torch.float32)], g, quant="ste")["context"][0]
    sl = model.layer_slice(0)
    out = [context * g[:, sl] * gi[:, sl]]      # ŷ_c · inv_gain with ŷ_c = context · g (one rounding apart)
    if with_pred:
        lower = [context]
        for l in range(1, len(model.latent_dims)):
            lower.append(coder.predict(lower, l))
            out.append(lower[-1])
    return out


# -------------------------------------------------------------------- storage
def _plain_meta(meta: Mapping | None) -> dict:
    try:
        return json.loads(json.dumps(dict(meta or {})))
    except (TypeError, ValueError) as e:
        raise TypeError(f"heads meta must be plain JSON-able values: {e}") from None


def heads_checkpoint(heads: AnalysisHeads, codec_fingerprint: int, meta: Mapping | None = None) -> dict:
    """The ``ck["heads"]`` entry for ``heads`` trained on the codec with ``codec_fingerprint``."""
    sd = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in heads.state_dict().items()}
    return {"format": HEADS_FORMAT, "version": HEADS_VERSION, "config": dict(heads.config), "state_dict": sd,
            "codec_fingerprint": int(codec_fingerprint), "meta": _plain_meta(meta)}


def save_heads_into(model_path: str | os.PathLike, heads: AnalysisHeads, out_path: str | os.PathLike | None = None,
                    meta: Mapping | None = None) -> int:
    """Write the model checkpoint ``model_path`` with ``heads`` added (replacing any) to ``out_path``
    (default: in place), atomically. The codec weights and fingerprint are copied unchanged; the
    heads are tagged with that fingerprint. Returns it."""
    from ..files import atomic_torch_save
    from ..zoo import read_checkpoint

    ck = read_checkpoint(model_path)
    ck["heads"] = heads_checkpoint(heads, ck["fingerprint"], meta)
    atomic_torch_save(ck, out_path if out_path is not None else model_path)
    return ck["fingerprint"]


def heads_from_entry(entry: Mapping, where: str, expected_fingerprint: int | None = None) -> AnalysisHeads:
    """Build heads from a ``ck["heads"]`` entry; raises :class:`HeadsError`."""
    if not isinstance(entry, Mapping) or entry.get("format") != HEADS_FORMAT:
        raise HeadsError(f"{where}: the 'heads' entry is not a stylecodec heads record")
    if entry.get("version") != HEADS_VERSION:
        raise HeadsError(f"{where}: heads version {entry.get('version')!r} is not supported (this reads "
                         f"{HEADS_VERSION})")
    fp = entry.get("codec_fingerprint")
    if expected_fingerprint is not None and fp != int(expected_fingerprint):
        raise HeadsError(f"{where}: the analysis heads were trained for codec 0x{int(fp or 0):04x}, this codec is "
                         f"0x{int(expected_fingerprint):04x}; retrain them with `stylecodec train heads`")
    try:
        heads = AnalysisHeads(**entry["config"])
        heads.load_state_dict(entry["state_dict"], strict=True)
    except Exception as e:  # noqa: BLE001
        raise HeadsError(f"{where}: damaged analysis heads ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    heads.meta = entry.get("meta", {})
    return heads.eval()


def load_heads(name_or_path: str | os.PathLike, expected_fingerprint: int | None = None) -> AnalysisHeads:
    """The analysis heads stored in a model checkpoint (registry name or path)."""
    from ..zoo import model_path, read_checkpoint

    path = model_path(name_or_path)
    ck = read_checkpoint(path)
    if "heads" not in ck:
        raise HeadsError(f"model {path} has no analysis heads; train them with "
                         f"`stylecodec train heads --model {path} --out RUN_DIR` and use RUN_DIR/model.pt")
    return heads_from_entry(ck["heads"], str(path), expected_fingerprint)


def heads_for(codec) -> AnalysisHeads:
    """``codec.heads`` if set, else the heads stored with the codec's model (``model.heads_entry``,
    or the checkpoint it was loaded from), cached on the codec, on the codec's device."""
    heads = getattr(codec, "heads", None)
    if heads is None and getattr(codec.model, "heads_entry", None) is not None:
        heads = codec.heads = heads_from_entry(codec.model.heads_entry, getattr(codec.model, "source", "model"),
                                               codec.fingerprint)
    if heads is None:
        source = getattr(codec.model, "source", None)
        if source is None:
            raise HeadsError("this codec's model was not loaded from a checkpoint and has no analysis heads; "
                             "set codec.heads = AnalysisHeads(...)")
        heads = load_heads(source, codec.fingerprint)
        codec.heads = heads
    return heads.to(codec.device).eval()


# -------------------------------------------------------------------- the analysis
@torch.no_grad()
def analyze_stream(codec, data: bytes, heads: AnalysisHeads | None = None) -> dict:
    """Landmarks and identity from the header + basic layer of ``data`` (a full or basic-only
    stream; bytes past the basic layer are never looked at).

    Returns {"landmarks": float32 (68, 2) (x, y) pixels of the R x R aligned face,
    "identity": float32 (512,) unit vector, "layers_used": "basic", "bytes_read": int}.
    Raises :class:`~stylecodec.bitstream.BitstreamError` for damaged / foreign streams and
    :class:`HeadsError` when the model has no heads.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"a bitstream is bytes, got {type(data).__name__}")
    prefix = basic_prefix(data)
    unpack(prefix, expected_fingerprint=codec.fingerprint)       # container errors before the heads load
    heads = heads if heads is not None else heads_for(codec)
    y_hat, _ = codec.decode_y(prefix, "basic")
    out = heads.to(codec.device).eval()(heads.features(y_hat))
    lm = landmarks_to_pixels(out["landmarks"][0].float().cpu().numpy(), codec.resolution)
    return {"landmarks": lm.astype(np.float32), "identity": out["identity"][0].float().cpu().numpy(),
            "layers_used": "basic", "bytes_read": len(prefix)}
