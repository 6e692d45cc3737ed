"""MachineFirstModel: a codec whose basic layer is identity + shape, trainable on a CPU.

Layers (coding order; ``y_l`` whitened, i.e. each element has unit variance on the training faces):

    basic    y_0 = [identity code (id_dims) | shape code (shape_dims)]
             identity: PCA of SFace's flip-averaged 128-d embedding (FaceFeatures, encoder side)
             shape:    PCA of dlib's 68 points (normalised coordinates)
    middle   y_1 = eigenface coefficients 0 .. middle-1      (PCA of training faces at P x P)
    enhanced y_2 = eigenface coefficients middle .. middle+enhanced-1

The LSET codes them (its first layer static: decoding the basic layer alone runs no transformer;
middle and enhanced are conditioned on the lower layers, and predicted from them when absent).
Qualities are the gain units of :class:`~stylecodec.model.StyleCodecModel` (``gain``, ``inv_gain``
[Q, D]); a gain near zero switches an element off (it is decoded as the LSET's mean).

Decoding: the analysis heads read ŷ_basic alone (:class:`BasicHeads`: identity = the PCA
reconstruction of SFace's embedding, unit; landmarks = the shape model's points) -- no pixels.
Pixels: ``x_lin = mean + [ŷ_middle, ŷ_enhanced] · basis`` (P x P), refined by :attr:`refiner` when
the model has one (a residual network conditioned on every layer), bicubic-upsampled to R x R.

Units: images in [-1, 1]; landmarks in [0, 1] of the R x R face ((p + 0.5) / R); identity unit vectors.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .entropy.coder import QUANTISERS
from .entropy.gains import QualityGains
from .entropy.lset import LSET
from .layers import LAYER_NAMES

__all__ = ["MachineFirstModel", "BasicHeads", "make_machine_first_config", "KIND", "GAIN_OFF", "downsample", "upsample"]

KIND = "machine-first"
GAIN_OFF = 1e-3              # gain of an element a quality does not code (always symbol 0, ~0 bits)

_DEFAULT: dict[str, Any] = {
    "kind": KIND,
    "resolution": 256,                               # R: side of the coded (aligned) face, pixels
    "pixel_resolution": 128,                         # P: side of the eigenface model
    "id_dims": 96,                                   # identity PCA components in the basic layer
    "shape_dims": 16,                                # shape PCA components in the basic layer
    "latent_dims": {"basic": 112, "middle": 64, "enhanced": 128},   # basic = id_dims + shape_dims
    "lset": {"group_size": 8, "d_model": 128, "n_blocks": 3, "n_heads": 4, "mlp_ratio": 2, "scale_bound": 0.11,
             "static_first_layer": True},
    "num_qualities": 8,
    "refiner": None,                                 # None, or the refiner's config (stylecodec.refiner)
    "rate_budget": None,                             # {"bpp", "basic_bpp"} (see stylecodec.model)
}


def downsample(x: torch.Tensor, p: int) -> torch.Tensor:
    """[N, 3, R, R] -> [N, 3, p, p]: how the encoder and the trainers see a face at the pixel resolution
    (antialiased bicubic: within 52 dB of the training faces' Lanczos resize from the originals, measured
    on 100 held-out faces)."""
    return x if x.shape[-1] == p else F.interpolate(x, size=(p, p), mode="bicubic", antialias=True,
                                                    align_corners=False)


def upsample(img: torch.Tensor, r: int) -> torch.Tensor:
    """[N, 3, P, P] -> [N, 3, r, r]: how the decoder brings its face to the coded resolution (bicubic)."""
    return img if img.shape[-1] == r else F.interpolate(img, size=(r, r), mode="bicubic", align_corners=False)


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in out:
            raise ValueError(f"unknown config key {k!r}; known: {sorted(out)}")
        out[k] = _merge(out[k], v) if isinstance(out[k], dict) and isinstance(v, Mapping) else copy.deepcopy(v)
    return out


def make_machine_first_config(overrides: Mapping | None = None) -> dict:
    """The default machine-first config with ``overrides`` merged in; checked."""
    from .model import _rate_budget

    cfg = _merge(_DEFAULT, overrides or {})
    dims = cfg["latent_dims"]
    cfg["latent_dims"] = {n: int(dims[n]) for n in LAYER_NAMES}
    if cfg["latent_dims"]["basic"] != int(cfg["id_dims"]) + int(cfg["shape_dims"]):
        raise ValueError(f"latent_dims['basic'] must be id_dims + shape_dims, got {cfg['latent_dims']}")
    if int(cfg["id_dims"]) > 128 or int(cfg["shape_dims"]) > 136:
        raise ValueError("id_dims <= 128 and shape_dims <= 136")
    if not 4 <= int(cfg["num_qualities"]) <= 8:
        raise ValueError(f"num_qualities must be 4..8, got {cfg['num_qualities']}")
    if cfg["rate_budget"] is not None:
        cfg["rate_budget"] = _rate_budget(cfg["rate_budget"])
    return cfg


class BasicHeads(nn.Module):
    """ŷ_basic -> identity and landmarks, no pixels (linear: the PCA models' reconstructions).

    Same interface as :class:`stylecodec.analysis.heads.AnalysisHeads`: ``features(y_hat)`` picks
    ŷ_basic [N, d_0] from the decoded layers, ``forward`` returns {"identity" [N, 128] unit,
    "landmarks" [N, 68, 2] normalised}.
    """

    inputs = "basic"

    def __init__(self, model: "MachineFirstModel"):
        super().__init__()
        self._model = [model]                # not a submodule: the weights are the model's

    @property
    def input_dim(self) -> int:
        return self._model[0].latent_dims[0]

    def features(self, y_hat: Sequence[torch.Tensor]) -> torch.Tensor:
        return y_hat[0]

    def forward(self, y_basic: torch.Tensor) -> dict[str, torch.Tensor]:
        m = self._model[0]
        assert y_basic.ndim == 2 and y_basic.shape[1] == m.latent_dims[0], tuple(y_basic.shape)
        y = y_basic.to(m.id_basis.dtype)
        k = m.id_dims
        e = m.id_mean + (y[:, :k] * m.id_std) @ m.id_basis
        lm = m.shape_mean + (y[:, k:] * m.shape_std) @ m.shape_basis
        return {"identity": F.normalize(e, dim=1), "landmarks": lm.view(-1, 68, 2)}


class MachineFirstModel(QualityGains, nn.Module):
    """See the module docstring. Buffers hold the PCA models (set by :meth:`set_pca`); ``gain`` /
    ``inv_gain`` [Q, D] and the LSET are parameters; ``refiner`` is optional."""

    # Weights that only post-process decoded pixels: left out of the stream key (bitstream.model_digest),
    # so a retrained refiner decodes every stream written before it (the pixels change, nothing else).
    PIXEL_ONLY_PREFIXES = ("refiner.",)

    def __init__(self, config: Mapping | None = None):
        super().__init__()
        self.config = cfg = make_machine_first_config(config)
        self.resolution, self.pixel_resolution = int(cfg["resolution"]), int(cfg["pixel_resolution"])
        self.id_dims, self.shape_dims = int(cfg["id_dims"]), int(cfg["shape_dims"])
        dims = [cfg["latent_dims"][n] for n in LAYER_NAMES]
        self.latent_dims, self.num_qualities = dims, int(cfg["num_qualities"])
        self.offsets = [sum(dims[:l]) for l in range(len(dims) + 1)]
        p2 = 3 * self.pixel_resolution ** 2
        k_pix = dims[1] + dims[2]
        for name, shape in (("id_mean", (128,)), ("id_basis", (self.id_dims, 128)), ("id_std", (self.id_dims,)),
                            ("shape_mean", (136,)), ("shape_basis", (self.shape_dims, 136)),
                            ("shape_std", (self.shape_dims,)),
                            ("pix_mean", (p2,)), ("pix_basis", (k_pix, p2)), ("pix_std", (k_pix,))):
            self.register_buffer(name, torch.zeros(shape) if "std" not in name else torch.ones(shape))
        self.lset = LSET(dims, **cfg["lset"])
        self.gain = nn.Parameter(torch.ones(self.num_qualities, self.offsets[-1]))
        self.inv_gain = nn.Parameter(torch.ones(self.num_qualities, self.offsets[-1]))
        self.refiner = None
        if cfg["refiner"] is not None:
            from .refiner import Refiner
            self.refiner = Refiner(dims, self.pixel_resolution, **cfg["refiner"])
        self.heads = BasicHeads(self)
        self._features = None

    # -- the PCA models ---------------------------------------------------------------------------
    @torch.no_grad()
    def set_pca(self, name: str, mean: np.ndarray, basis: np.ndarray, std: np.ndarray) -> None:
        """Install a PCA model: ``name`` in {"id", "shape", "pix"}; basis [k, D] (orthonormal rows)."""
        for part, value in (("mean", mean), ("basis", basis), ("std", std)):
            buf = getattr(self, f"{name}_{part}")
            value = torch.as_tensor(np.asarray(value), dtype=torch.float32)
            if value.shape != buf.shape:
                raise ValueError(f"{name}_{part}: expected {tuple(buf.shape)}, got {tuple(value.shape)}")
            buf.copy_(value)

    # -- encoder side -------------------------------------------------------------------------------
    def face_features(self, faces_u8: np.ndarray) -> dict[str, np.ndarray]:
        """:class:`~stylecodec.encoder.face_features.FaceFeatures` of uint8 faces [N, R, R, 3]."""
        if self._features is None:
            from .encoder.face_features import FaceFeatures
            self._features = FaceFeatures()
        return self._features(faces_u8)

    def basic_latent(self, identity: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """identity [N, 128] (unit), landmarks [N, 68, 2] normalised -> y_basic [N, d_0] (whitened)."""
        y_id = ((identity.to(self.id_basis.dtype) - self.id_mean) @ self.id_basis.T) / self.id_std
        lm = landmarks.reshape(landmarks.shape[0], -1).to(self.id_basis.dtype)
        y_sh = ((lm - self.shape_mean) @ self.shape_basis.T) / self.shape_std
        return torch.cat([y_id, y_sh], 1)

    def small(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, 3, R, R] in [-1, 1] -> [N, 3, P, P] (:func:`downsample`)."""
        return downsample(x, self.pixel_resolution)

    def pixel_latents(self, x_small: torch.Tensor) -> list[torch.Tensor]:
        """[N, 3, P, P] in [-1, 1] -> [y_middle, y_enhanced] (whitened eigenface coefficients)."""
        z = ((x_small.reshape(x_small.shape[0], -1) - self.pix_mean) @ self.pix_basis.T) / self.pix_std
        return list(z.split(self.latent_dims[1:], 1))

    @torch.no_grad()
    def encode_latents(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [N, 3, R, R] in [-1, 1] -> y_l [N, d_l] float32 (runs the frozen face networks on CPU)."""
        assert x.ndim == 4 and x.shape[1:] == (3, self.resolution, self.resolution), tuple(x.shape)
        u8 = ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        feats = self.face_features(u8)
        dev = self.id_basis.device
        y0 = self.basic_latent(torch.from_numpy(feats["identity"]).to(dev), torch.from_numpy(feats["landmarks"]).to(dev))
        return [y0] + self.pixel_latents(self.small(x.to(dev).float()))

    # -- decoder side -------------------------------------------------------------------------------
    def linear_image(self, y_middle: torch.Tensor, y_enhanced: torch.Tensor) -> torch.Tensor:
        """Eigenface reconstruction [N, 3, P, P] from (whitened) middle and enhanced latents."""
        z = torch.cat([y_middle, y_enhanced], 1).to(self.pix_basis.dtype) * self.pix_std
        p = self.pixel_resolution
        return (self.pix_mean + z @ self.pix_basis).view(-1, 3, p, p)

    def render(self, y_hat: Sequence[torch.Tensor], fast: bool = False) -> torch.Tensor:
        """Decoded latents of every layer (received, then predicted) -> image [N, 3, R, R] in [-1, 1].
        ``fast``: as in training (oneDNN, the batch as is), for the encoder's search; decoding never sets it."""
        assert len(y_hat) == len(self.latent_dims), len(y_hat)
        fast = fast or self.training
        if not fast and len(y_hat[0]) > 1:             # decoding: a face's pixels never depend on its batch
            return torch.cat([self.render([y[i:i + 1] for y in y_hat]) for i in range(len(y_hat[0]))])
        img = self.linear_image(y_hat[1], y_hat[2])
        if self.refiner is not None:
            # oneDNN's convolutions round differently with the thread count, the native ones do not: decoding
            # uses those, so a stream gives the same pixels in any run (training keeps oneDNN: faster)
            with torch.backends.mkldnn.flags(enabled=fast, allow_tf32=None):   # (None: leave TF32 be)
                img = self.refiner(img, y_hat)
        return upsample(img, self.resolution).clamp(-1, 1)

    # -- training forward (CompressAI style) --------------------------------------------------------
    def forward(self, ys: Sequence[torch.Tensor], quality, quant: str = "noise", render: bool = False) -> dict:
        """Emulated coding of given latents ``ys`` (all layers; the encoder side is frozen, so training
        works on cached latents). Returns {"likelihoods": [p_l [N, d_l]], "y_hat": [ŷ_l] (synthesis
        inputs), "context": [...], "x_hat": {k: image from the first k layers} when ``render``}."""
        if quant not in QUANTISERS:
            raise ValueError(f"quant must be one of {tuple(QUANTISERS)}, got {quant!r}")
        n = ys[0].shape[0]
        g, gi = self.gains(quality, n, ys[0].dtype)
        coder = self.coder
        coded = coder(ys, g, quant)
        y_hat = [y_c * gi[:, self.layer_slice(l)] for l, y_c in enumerate(coded["y_hat"])]
        out = {"likelihoods": coded["likelihoods"], "y_hat": y_hat, "context": coded["context"], "x_hat": {}}
        if render:
            for k in range(1, len(ys) + 1):
                full = list(y_hat[:k]) + coder.complete(coded["context"][:k])[k:]
                out["x_hat"][k] = self.render(full)
        return out

    @staticmethod
    def bits(out: dict) -> torch.Tensor:
        """Rate in bits per image and layer, [N, n_layers]."""
        return torch.stack([-torch.log2(p).sum(1) for p in out["likelihoods"]], 1)

    def fp16_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes a checkpoint may store in float16 (the eigenface basis and the refiner)."""
        return ("pix_basis", "refiner.")


def quality_gains(model: MachineFirstModel, table: Sequence[Mapping]) -> torch.Tensor:
    """[Q, D] gains from a per-quality table of {"id": [k, step], "shape": [k, step], "pix": [k_middle,
    k_enhanced, step]}: element i of a part is coded with step ``step`` (in that part's PCA units:
    SFace units, normalised landmark coordinates, eigenface coefficients) when i < k, else switched
    off (gain GAIN_OFF). Whitened latents: gain = std / step."""
    if len(table) != model.num_qualities:
        raise ValueError(f"need {model.num_qualities} rows, got {len(table)}")
    g = torch.full((model.num_qualities, model.offsets[-1]), GAIN_OFF)
    kid, m = model.id_dims, model.latent_dims[1]
    for q, row in enumerate(table):
        k, step = row["id"]
        g[q, :k] = model.id_std[:k] / step
        k, step = row["shape"]
        g[q, kid:kid + k] = model.shape_std[:k] / step
        km, ke, step = row["pix"]
        o = model.offsets[1]
        g[q, o:o + km] = model.pix_std[:km] / step
        g[q, o + m:o + m + ke] = model.pix_std[m:m + ke] / step
    return g
