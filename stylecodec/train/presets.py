"""Preset and mode names of the trainers, as plain data (no torch): the command line lists them
without importing the networks. The trainers (:mod:`stylecodec.train.prior`,
:mod:`stylecodec.train.codec_config`) read them from here."""
from __future__ import annotations

from typing import Any

# ---------------------------------------------------------------- stylecodec train prior
PRIOR_PRESETS: dict[str, dict[str, Any]] = {
    # 2 CPU cores, fp32, ~17 images per CPU-second: 60 kimg is about an hour (see experiments/train_prior.sh).
    "cpu64": dict(resolution=64, batch=16, channel_base=2048, channel_max=64, map_layers=2, r1_gamma=0.05,
                  ema_kimg=5.0, kimg=60.0, log_kimg=0.5, snap_kimg=5.0, ckpt_kimg=5.0, conv_clamp=0),
    # One H100, bf16 autocast: n = 14 W+ entries, slim top widths (256 max); capped at 55 minutes.
    "gpu256": dict(resolution=256, batch=64, channel_base=16384, channel_max=256, map_layers=8, r1_gamma=1.0,
                   ema_kimg=20.0, kimg=1500.0, log_kimg=4.0, snap_kimg=50.0, ckpt_kimg=50.0, max_minutes=55.0),
}


# ---------------------------------------------------------------- stylecodec train codec
CODEC_MODES = ("pretrain-encoder", "joint", "finetune")

# Slim 256² model for 2 CPU cores: 128 channels up to 32², then 64/32/16 at 64²/128²/256².
CPU_MODEL: dict[str, Any] = {
    "generator": {"channel_base": 4096, "channel_max": 128, "mapping_layers": 2, "num_fp16_res": 0,
                  "conv_clamp": None},
    "encoder": {"backbone": "resnet18", "input_resolution": 128, "fpn_width": 64, "style_width": 64,
                "normalize_ws": True},   # from scratch, no prior: the only anchor of W's scale
    "transforms": {"proj_dim": 32, "hidden": 128},
    "lset": {"d_model": 64, "n_blocks": 2, "n_heads": 4},
}
CODEC_PRESET_MODELS: dict[str, dict[str, Any]] = {"cpu": CPU_MODEL, "gpu256": {}}
CODEC_PRESETS: dict[str, dict[str, Any]] = {
    "cpu": dict(batch=4, kimg=20.0, log_every=10, val_every=250, snap_every=250, ckpt_every=250, val_images=16,
                coder_images=4, id_size=128, prefix_probs="1,1,1", heads="analysis", target_basic_bpp=0.003),
    "gpu256": dict(batch=32, kimg=4000.0, log_every=50, val_every=1000, snap_every=1000, ckpt_every=1000,
                   val_images=64, coder_images=16, heads="analysis", target_basic_bpp=0.003),
}
