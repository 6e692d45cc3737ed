"""StyleCodecModel: every network of the codec, built from ONE plain (JSON-able) config dict.

Parts: ``G`` (StyleGAN2 Generator), ``E`` (GradualStyleEncoder), ``transforms``
(LayerTransforms: W+ <-> y_l), ``lset`` (LSET: p(ŷ_l | ŷ_<l)) and the gain units
(Cui et al. 2021): parameters ``gain`` and ``inv_gain``, each [Q, D] with D = sum(d_l),
one positive vector per quality q = 0..Q-1 (higher q = larger gain = finer steps = more bytes).

Domains (units). ``y`` is the analysis output (unitless, "unscaled"). The LSET predicts
(μ, σ) of y in that unscaled domain. Coding happens on ``y_c = y * g`` with mean ``μ * g``
and scale ``σ * g`` (snapped by :mod:`stylecodec.entropy.gaussian`), giving the dequantised
``ŷ_c = s + snap(μ g)``. Context fed back to the LSET: ``ŷ_c / g`` (float64 division by
stored gains: correctly rounded, so encoder and decoder get the same bits on any machine;
it keeps the LSET in one domain for every quality). The synthesis transforms receive
``ŷ = ŷ_c * inv_gain`` (the learned inverse gain). Layers that were not received are
the LSET's greedy means (unscaled domain, used as they are). Gains are stored as values
(``|gain|``, floored at GAIN_MIN), never as exp(log gain): exp is not bit-reproducible.

Forward (training; CompressAI style)::

    out = model(x, quality, n_layers=3, render=True, quant="mixed", amp=None)
    x        [N, 3, R, R] in [-1, 1]   (R = config["resolution"])
    quality  int or int64 tensor [N]   (0..Q-1, per sample)
    out["ws"]          [N, num_ws, w_dim]  encoder W+ (W units)
    out["y"]           [y_l [N, d_l] for l < n_layers]  unscaled latents
    out["y_hat"]       [ŷ_l [N, d_l]]      dequantised, unscaled (ŷ_c * inv_gain): what G sees
    out["context"]     [c_l [N, d_l]]      what the LSET saw (ŷ_c / g; noisy in noise/mixed)
    out["means"], out["scales"]  [N, d_l] each, unscaled LSET parameters
    out["likelihoods"] [p_l [N, d_l]]      bin probabilities in the coding domain (>= 1e-9);
                                           bits of layer l = -log2(p_l).sum(1)
    out["ws_hat"]      {k: [N, num_ws, w_dim]} for k = 1..n_layers: first k layers received,
                                           the rest predicted by LSET means
    out["x_hat"]       {k: [N, 3, R, R]}   G.synthesis(ws_hat[k], noise_mode='const'); only if render
    out["quality"]     int64 [N]

``quant``: "noise" (context, rate and ŷ from additive U(-½, ½); the context and the
likelihood use independent draws, as CompressAI's mbt2018 does), "ste" (exact emulation of
the coder: group by group, rounded around the snapped mean, straight-through; one LSET
pass per group) or "mixed" (rate and context as "noise", ŷ for synthesis rounded as "ste"); the
quantisers and the group loop are :class:`stylecodec.entropy.coder.GroupCoder`'s. ``amp``: autocast
dtype for the encoder E (bf16 when training on CUDA), whose W+ comes back as float32.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import torch
from torch import nn

from .encoder import GradualStyleEncoder
from .entropy.coder import QUANTISERS
from .entropy.gains import GAIN_MIN, QualityGains
from .entropy.lset import LSET
from .entropy.transforms import LayerTransforms
from .gan import build_generator, load_checkpoint, num_ws_for
from .layers import LAYER_NAMES, LayerSplit

__all__ = ["StyleCodecModel", "default_config", "tiny_config", "make_config", "GAIN_MIN", "QUANT_MODES"]

QUANT_MODES = tuple(QUANTISERS)                     # ("noise", "ste", "mixed"): see stylecodec.entropy.coder

_DEFAULT: dict[str, Any] = {
    "resolution": 256,
    "generator": {"channel_base": 16384, "channel_max": 256, "z_dim": 512, "w_dim": 512, "mapping_layers": 8,
                  "num_fp16_res": 4, "conv_clamp": 256},
    "encoder": {"backbone": "resnet34", "feature_levels": [1, 2, 3], "fpn_width": 128, "style_width": 64,
                "input_resolution": 256, "mode": "psp", "offsets_scale": 0.1, "start_from_latent_avg": True,
                "normalize_ws": False},
    "split": None,                                   # None = LayerSplit.default(num_ws)
    "latent_dims": {"basic": 16, "middle": 24, "enhanced": 32},
    "transforms": {"proj_dim": 64, "hidden": 256},
    "lset": {"group_size": 4, "d_model": 128, "n_blocks": 3, "n_heads": 4, "mlp_ratio": 2, "scale_bound": 0.11},
    "num_qualities": 6,
    "gain_init": [0.25, 4.0],                         # geometric init of gain[0] .. gain[Q-1]
    "rate_budget": None,                             # {"bpp", "basic_bpp"}: the per-image budget (bits per pixel of
                                                     # the R x R face; None = no limit) the model was trained for;
                                                     # Codec.compress's default. None: the highest quality
}


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in out:
            raise ValueError(f"unknown config key {k!r}; known: {sorted(out)}")
        out[k] = _merge(out[k], v) if isinstance(out[k], dict) and isinstance(v, Mapping) else copy.deepcopy(v)
    return out


def make_config(overrides: Mapping | None = None) -> dict:
    """The default config with ``overrides`` merged in (nested dicts merge key by key)."""
    cfg = _merge(_DEFAULT, overrides or {})
    if int(cfg["num_qualities"]) < 4:
        raise ValueError(f"num_qualities must be >= 4 (rate points), got {cfg['num_qualities']}")
    if isinstance(cfg["latent_dims"], Mapping):
        cfg["latent_dims"] = {n: int(cfg["latent_dims"][n]) for n in LAYER_NAMES}
    else:
        cfg["latent_dims"] = {n: int(d) for n, d in zip(LAYER_NAMES, cfg["latent_dims"], strict=True)}
    if cfg["rate_budget"] is not None:
        cfg["rate_budget"] = _rate_budget(cfg["rate_budget"])
    return cfg


def _rate_budget(budget: Mapping) -> dict:
    """Checked ``rate_budget``: {"bpp": float > 0 | None, "basic_bpp": float > 0 | None}."""
    if not isinstance(budget, Mapping) or set(budget) != {"bpp", "basic_bpp"}:
        raise ValueError(f"rate_budget must be {{'bpp': B, 'basic_bpp': b}} (None for no limit), got {budget!r}")
    out = {}
    for k, v in budget.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
            raise ValueError(f"rate_budget[{k!r}] must be a number > 0 or None, got {v!r}")
        out[k] = None if v is None else float(v)
    return out


def default_config() -> dict:
    """The project's default model: 256², n = 14, latents 16/24/32, 6 qualities."""
    return make_config()


def tiny_config() -> dict:
    """A 64² toy (n = 10, small widths) for mechanics tests and fuzzing; never a shipped model."""
    return make_config({
        "resolution": 64,
        "generator": {"channel_base": 256, "channel_max": 16, "z_dim": 16, "w_dim": 16, "mapping_layers": 2,
                      "num_fp16_res": 0},
        "encoder": {"backbone": "resnet10t", "fpn_width": 8, "style_width": 8, "input_resolution": 64},
        "latent_dims": {"basic": 8, "middle": 8, "enhanced": 8},
        "transforms": {"proj_dim": 4, "hidden": 16},
        "lset": {"d_model": 16, "n_blocks": 1, "n_heads": 2, "mlp_ratio": 2},
    })


class StyleCodecModel(QualityGains, nn.Module):
    """All networks of the codec; see the module docstring for the forward contract."""

    def __init__(self, config: Mapping | None = None):
        super().__init__()
        self.config = make_config(config)
        cfg = self.config
        res = int(cfg["resolution"])
        self.G = build_generator(res, **cfg["generator"])
        w_dim, num_ws = self.G.w_dim, self.G.num_ws
        assert num_ws == num_ws_for(res)
        self.split = LayerSplit.default(num_ws) if cfg["split"] is None else LayerSplit.from_dict(cfg["split"])
        self.E = GradualStyleEncoder(num_ws, w_dim=w_dim, split=self.split, **cfg["encoder"])
        dims = [cfg["latent_dims"][n] for n in LAYER_NAMES]
        self.transforms = LayerTransforms(self.split, dims, w_dim=w_dim, **cfg["transforms"])
        self.lset = LSET(dims, **cfg["lset"])
        self.latent_dims, self.num_qualities, self.resolution = dims, int(cfg["num_qualities"]), res
        self.offsets = [sum(dims[:l]) for l in range(len(dims) + 1)]  # element offsets of each layer in D
        lo, hi = (float(v) for v in cfg["gain_init"])
        q = torch.arange(self.num_qualities, dtype=torch.float64) / (self.num_qualities - 1)
        g0 = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * q).float()  # init only
        self.gain = nn.Parameter(g0[:, None].repeat(1, self.offsets[-1]))
        self.inv_gain = nn.Parameter((1.0 / g0)[:, None].repeat(1, self.offsets[-1]))
        self.sync_w_avg()

    # -- plumbing ------------------------------------------------------------------------------
    @torch.no_grad()
    def sync_w_avg(self) -> None:
        """Copy G.mapping.w_avg into E and the transforms (call after loading a prior into G)."""
        self.E.set_w_avg(self.G.mapping.w_avg)
        self.transforms.set_w_avg(self.G.mapping.w_avg)

    def load_prior(self, path) -> None:
        """Load a generator checkpoint (``stylecodec.gan.save_checkpoint``) into G, then sync w_avg."""
        self.G.load_state_dict(load_checkpoint(path).state_dict())
        self.sync_w_avg()

    # -- training forward ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor, quality, n_layers: int = 3, render: bool = True,
                quant: str = "mixed", amp: torch.dtype | None = None) -> dict:
        if quant not in QUANT_MODES:
            raise ValueError(f"quant must be one of {QUANT_MODES}, got {quant!r}")
        if not 1 <= n_layers <= len(LAYER_NAMES):
            raise ValueError(f"n_layers must be 1..{len(LAYER_NAMES)}, got {n_layers}")
        if amp is None:
            ws = self.E(x)
        else:
            with torch.autocast(x.device.type, dtype=amp):
                ws = self.E(x).float()
        ys = self.transforms.analyse(ws)[:n_layers]
        g, gi = self.gains(quality, x.shape[0], ws.dtype)
        coder = self.coder
        coded = coder(ys, g, quant)
        y_hat = [y_c * gi[:, self.layer_slice(l)] for l, y_c in enumerate(coded["y_hat"])]
        ctx = coded["context"]
        out = {"ws": ws, "y": ys, "y_hat": y_hat, "context": ctx, "means": coded["means"],
               "scales": coded["scales"], "likelihoods": coded["likelihoods"], "ws_hat": {}, "x_hat": {},
               "quality": torch.as_tensor(quality, device=x.device).long().expand(x.shape[0])}
        for k in range(1, n_layers + 1):
            full = list(y_hat[:k])
            lower = list(ctx[:k])
            for l in range(k, len(LAYER_NAMES)):
                pred = coder.predict(lower, l)
                lower.append(pred)
                full.append(pred)
            out["ws_hat"][k] = self.transforms.synthesise(full)
            if render:
                out["x_hat"][k] = self.G.synthesis(out["ws_hat"][k], noise_mode="const")
        return out

    def encode_latents(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [N, 3, R, R] in [-1, 1] -> unscaled latents y_l [N, d_l] (the codec's encoder side)."""
        return self.transforms.analyse(self.E(x))

    def render(self, y_hat: list[torch.Tensor]) -> torch.Tensor:
        """Synthesis inputs of every layer -> image [N, 3, R, R] (the codec's decoder side)."""
        return self.G.synthesis(self.transforms.synthesise(y_hat), noise_mode="const")

    @staticmethod
    def bits(out: dict) -> torch.Tensor:
        """Rate in bits per image and layer, [N, n_layers], from ``out['likelihoods']``."""
        return torch.stack([-torch.log2(p).sum(1) for p in out["likelihoods"]], 1)
