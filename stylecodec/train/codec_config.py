"""Configuration of ``stylecodec train codec``: modes, presets, option merging, model config.

See :mod:`stylecodec.train.codec` for the trainer and what each mode does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import StylecodecError
from ..model import make_config
from . import common
from .losses import IDENTITY_NETS, MACHINE_HEADS, PERCEPTUAL_NETS, LossWeights
from .presets import CODEC_MODES as MODES, CODEC_PRESET_MODELS as PRESET_MODELS, CODEC_PRESETS as PRESETS


DEFAULTS: dict[str, Any] = dict(
    mode="joint", data=None, val_data=None, prior=None, init=None, model_json=None, resolution=None,
    channel_base=None, channel_max=None, z_dim=None, w_dim=None, map_layers=None, backbone=None, enc_res=None,
    style_width=None, fpn_width=None, latent_dims=None, qualities=None, model_config=None,
    lr=2e-4, g_lr=2e-3, d_lr=2e-3, grad_clip=0.0, rate=10.0, rate_ratio=1.6, lambda_basic=1.0, lambda_middle=1.0,
    lambda_enhanced=1.0, id_weight=1.0, lpips_weight=1.0, l2_weight=1.0, ms_ssim_weight=0.0, latent_weight=1.0,
    adv_weight=0.0, r1_gamma=None, r1_interval=16, identity="facenet", id_size=160, perceptual="alex",
    target_bpp=0.01, target_bytes=None, target_basic_bpp=None, rate_margin=3.0, rate_control=0.05, p_default=0.25, quant="mixed",
    truncation=1.0,
    style_mixing=0.5, heads="", teacher_labels=None, prefix_probs="", threads=None, val_count=1000, val_images=32, coder_images=4,
    val_every=500, coder_every=4,
    log_every=20, snap_every=500, ckpt_every=500, keep=2, seed=0, device="auto", precision="auto", workers=None,
    max_minutes=None, xflip=True, storage="fp16")

# Options that may change when a run is resumed; all others must match the checkpoint.
RUN_CONTROL = {"data", "val_data", "out", "kimg", "keep", "device", "precision", "workers", "max_minutes", "storage",
               "log_every", "val_every", "snap_every", "ckpt_every", "coder_every", "val_images", "coder_images",
               "preset", "threads", "teacher_labels"}
_ARCH = ("model_json", "resolution", "channel_base", "channel_max", "z_dim", "w_dim", "map_layers", "backbone",
         "enc_res", "style_width", "fpn_width", "latent_dims", "qualities")


@dataclass
class CodecConfig:
    """Everything a run needs; stored in each checkpoint (``config``) and in RUN_DIR/config.json.
    Architecture options (``_ARCH``) override the preset's model; ``model_config`` is the final
    StyleCodecModel config, fixed when the run starts."""
    out: str
    batch: int
    kimg: float
    mode: str
    data: str | None
    val_data: str | None
    prior: str | None
    init: str | None
    model_json: str | None
    resolution: int | None
    channel_base: int | None
    channel_max: int | None
    z_dim: int | None
    w_dim: int | None
    map_layers: int | None
    backbone: str | None
    enc_res: int | None
    style_width: int | None
    fpn_width: int | None
    latent_dims: str | None
    qualities: int | None
    model_config: dict | None
    lr: float
    g_lr: float
    d_lr: float
    grad_clip: float
    rate: float
    rate_ratio: float
    lambda_basic: float
    lambda_middle: float
    lambda_enhanced: float
    id_weight: float
    lpips_weight: float
    l2_weight: float
    ms_ssim_weight: float
    latent_weight: float
    adv_weight: float
    r1_gamma: float | None
    r1_interval: int
    identity: str
    id_size: int
    perceptual: str
    target_bpp: float
    target_bytes: int | None
    target_basic_bpp: float | None
    rate_margin: float
    rate_control: float
    p_default: float
    quant: str
    truncation: float
    style_mixing: float
    heads: str
    teacher_labels: str | None
    prefix_probs: str
    threads: int | None
    val_count: int
    val_images: int
    coder_images: int
    val_every: int
    coder_every: int
    log_every: int
    snap_every: int
    ckpt_every: int
    keep: int
    seed: int
    device: str
    precision: str
    workers: int | None
    max_minutes: float | None
    xflip: bool
    storage: str = "fp16"
    preset: str | None = None

    def validate(self) -> None:
        if self.storage not in ("fp16", "fp32"):
            raise StylecodecError(f"--storage must be fp16 or fp32, got {self.storage!r}")
        if self.mode not in MODES:
            raise StylecodecError(f"unknown --mode {self.mode!r}; choose from {', '.join(MODES)}")
        if self.mode != "joint" and not (self.prior or self.init or self.model_config):
            raise StylecodecError(f"--mode {self.mode} keeps G frozen: give --prior PATH (or --init MODEL.pt)")
        if self.mode != "joint" and self.adv_weight > 0:
            raise StylecodecError("--adv-weight needs --mode joint (G is frozen otherwise)")
        for name in ("batch", "val_every", "coder_every", "log_every", "snap_every", "ckpt_every", "r1_interval",
                     "id_size", "val_images"):
            if getattr(self, name) < 1:
                raise StylecodecError(f"--{name.replace('_', '-')} must be at least 1")
        if self.kimg < 0.001:
            raise StylecodecError("--kimg must be at least 0.001 (one image)")
        if self.identity not in IDENTITY_NETS or self.perceptual not in PERCEPTUAL_NETS:
            raise StylecodecError(f"--identity must be one of {IDENTITY_NETS}, --perceptual one of {PERCEPTUAL_NETS}")
        if self.quant not in ("noise", "ste", "mixed"):
            raise StylecodecError(f"--quant must be noise, ste or mixed, not {self.quant!r}")
        if self.target_basic_bpp is not None and self.target_basic_bpp < 0:
            raise StylecodecError("--target-basic-bpp must be >= 0 (0 = no basic-layer budget)")
        if not 0 <= self.p_default <= 1:
            raise StylecodecError("--p-default must be in [0, 1]")
        if self.prefix_probs and (len(self.prefix_list()) != 3 or min(self.prefix_list()) < 0
                                  or sum(self.prefix_list()) <= 0):
            raise StylecodecError(f"--prefix-probs wants three non-negative weights (basic,middle,all), "
                                  f"not {self.prefix_probs!r}")
        for name in filter(None, self.heads.split(",")):
            if name not in MACHINE_HEADS:
                raise StylecodecError(f"unknown machine head {name!r} (registered: {sorted(MACHINE_HEADS) or 'none'})")
        if self.teacher_labels and ("analysis" not in self.heads.split(",") or self.mode == "pretrain-encoder"):
            raise StylecodecError("--teacher-labels feeds the 'analysis' head on real faces: it needs --heads analysis "
                                  "and --mode joint or finetune")

    def prefix_list(self) -> list[float]:
        try:
            return [float(v) for v in self.prefix_probs.split(",")] if self.prefix_probs else []
        except ValueError:
            raise StylecodecError(f"--prefix-probs {self.prefix_probs!r} is not a list of numbers") from None

    def rate_budget(self, resolution: int) -> dict | None:
        """The trained model's ``rate_budget`` (``Codec.compress``'s default, in bpp of the R x R
        face): the whole-file and basic-layer targets this run steers the highest quality to."""
        bpp = self.target_bytes * 8 / resolution ** 2 if self.target_bytes is not None else (self.target_bpp or None)
        basic = self.target_basic_bpp or None
        return None if bpp is None and basic is None else {"bpp": bpp, "basic_bpp": basic}

    def loss_weights(self) -> LossWeights:
        return LossWeights(rate=self.rate, rate_ratio=self.rate_ratio, basic=self.lambda_basic,
                           middle=self.lambda_middle, enhanced=self.lambda_enhanced, identity=self.id_weight,
                           lpips=self.lpips_weight, l2=self.l2_weight, ms_ssim=self.ms_ssim_weight,
                           latent=self.latent_weight)


def resolve_config(given: dict[str, Any], preset: str | None = None,
                   checkpoint_config: dict[str, Any] | None = None) -> CodecConfig:
    """Defaults < preset < ``given`` options (None = not given). When resuming, the checkpoint's
    config replaces defaults and preset; a given option outside RUN_CONTROL must match it."""
    given = {k: v for k, v in given.items() if v is not None}
    if checkpoint_config is not None:
        # options added after the checkpoint was written take their defaults (= the old behaviour)
        cfg = {**DEFAULTS, **common.merge_resumed_config(checkpoint_config, given, RUN_CONTROL)}
    else:
        if preset is not None and preset not in PRESETS:
            raise StylecodecError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        cfg = {**DEFAULTS, **(PRESETS[preset] if preset else {}), **given, "preset": preset, "model_config": None}
        missing = [f.name for f in fields(CodecConfig) if f.name not in cfg]
        if missing:
            raise StylecodecError("without --preset, also give " + ", ".join("--" + m.replace("_", "-")
                                                                              for m in missing))
    config = CodecConfig(**{k: v for k, v in cfg.items() if k in {f.name for f in fields(CodecConfig)}})
    config.validate()
    return config


def _prior_generator_config(G) -> dict[str, Any]:
    kw = G.init_kwargs
    syn, mp = kw.get("synthesis_kwargs", {}), kw.get("mapping_kwargs", {})
    return {"channel_base": int(syn.get("channel_base", 32768)), "channel_max": int(syn.get("channel_max", 512)),
            "z_dim": int(kw["z_dim"]), "w_dim": int(kw["w_dim"]), "mapping_layers": int(mp.get("num_layers", 8)),
            "num_fp16_res": int(syn.get("num_fp16_res", 0)), "conv_clamp": syn.get("conv_clamp")}


def _flags(names) -> str:
    return ", ".join("--" + k.replace("_", "-") for k in names)


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_model_config(cfg: CodecConfig, prior=None, init_config: dict | None = None) -> dict:
    """The StyleCodecModel config of a new run: the init model's, or the preset's model with the
    architecture options merged in; a prior fixes the generator and the resolution."""
    given = {k: getattr(cfg, k) for k in _ARCH if getattr(cfg, k) is not None}
    if init_config is not None:
        if given:
            raise StylecodecError(f"--init fixes the architecture; drop {_flags(given)}")
        mc = make_config(init_config)
    else:
        over: dict[str, Any] = json.loads(Path(cfg.model_json).read_text()) if cfg.model_json else {}
        mc = make_config(_deep_merge(PRESET_MODELS.get(cfg.preset or "", {}), over))
        gen, enc = dict(mc["generator"]), dict(mc["encoder"])
        for key, opt in (("channel_base", "channel_base"), ("channel_max", "channel_max"), ("z_dim", "z_dim"),
                         ("w_dim", "w_dim"), ("mapping_layers", "map_layers")):
            if getattr(cfg, opt) is not None:
                gen[key] = getattr(cfg, opt)
        for key, opt in (("backbone", "backbone"), ("input_resolution", "enc_res"), ("style_width", "style_width"),
                         ("fpn_width", "fpn_width")):
            if getattr(cfg, opt) is not None:
                enc[key] = getattr(cfg, opt)
        mc.update(generator=gen, encoder=enc)
        if cfg.resolution is not None:
            mc["resolution"] = cfg.resolution
        if cfg.latent_dims is not None:
            mc["latent_dims"] = [int(d) for d in cfg.latent_dims.split(",")]
        if cfg.qualities is not None:
            mc["num_qualities"] = cfg.qualities
    if prior is not None:
        pg = _prior_generator_config(prior)
        if cfg.resolution is not None and cfg.resolution != prior.img_resolution:
            raise StylecodecError(f"--resolution {cfg.resolution} differs from the prior's {prior.img_resolution}")
        clash = [k for k in ("channel_base", "channel_max", "z_dim", "w_dim") if getattr(cfg, k) is not None
                 and getattr(cfg, k) != pg[k]]
        if clash:
            raise StylecodecError(f"the prior fixes the generator; drop {_flags(clash)}")
        mc["generator"], mc["resolution"] = pg, int(prior.img_resolution)
    mc["encoder"]["input_resolution"] = min(int(mc["encoder"]["input_resolution"]), int(mc["resolution"]))
    return make_config(mc)
