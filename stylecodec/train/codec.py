"""``stylecodec train codec``: E, the layer transforms, the LSET and the gains (and in joint mode G).

Modes (DESIGN.md §1):

- ``pretrain-encoder``: G frozen (``--prior`` or ``--init``); images are generated from
  w = G.mapping(z) (style mixing, optional truncation), so W+ is known: pSp/e4e pretraining
  with the latent loss to the true w on top of the codec objective.
- ``joint`` (compute-aware route): real faces; E, transforms, LSET, gains AND G.synthesis train
  together as a style-based autoencoder (G from ``--prior`` or from scratch), optionally with
  a light non-saturating adversarial term and lazy R1 (``--adv-weight > 0``).
- ``finetune``: real faces, G frozen; the codec parts train.

Objective: :mod:`stylecodec.train.losses`. Each sample draws a quality index (the highest
with probability ``p_default``, else uniform). Rate control: the rate
weight is scaled by c = exp(s), and after every step s += rate_control · ln(bits_top / budget)
(s kept in [-5, 8]), where bits_top is the mean rate of the highest-quality samples (all ranks)
and budget = 8·(target_bytes − margin − container bytes − coder overhead): the highest quality's
whole three-layer file lands ``rate_margin`` (3) bytes under ``target_bytes`` on average (81 = 0.01 bpp
at 256²), so typical faces stay at or under it. The targets become the model's ``rate_budget``:
``Codec.compress`` by default takes, per face, the highest quality within them. The coder
overhead (range-coder bytes beyond −log2 p, ≈ 0.3 per layer) starts at 1 byte and is re-measured by each
real-coder check (the whole file's for the file budget, the basic layer's for the basic budget).

Intervals are in optimiser steps, the budget in kimg (thousands of training images). Writes
RUN_DIR/ckpt-<step>.pt (resumable: ``--resume auto``), config.json, tb/, samples/*.png and at
the end model.pt (:func:`stylecodec.zoo.save_model`, meta = training record) + model.json.
Validation on the held-out split (last ``val_count`` files by name) at the highest quality uses
the exact coding emulation (quant "ste") for bits; every ``coder_every``-th validation also
runs the real coder on ``coder_images`` faces.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from ..bitstream import unpack
from ..codec import Codec
from ..data import default_data_root, open_dataset
from ..errors import StylecodecError
from ..gan import build_discriminator, load_official
from ..layers import LAYER_NAMES
from ..metrics.image import psnr
from ..metrics.lpips import lpips_distance
from ..model import StyleCodecModel
from ..zoo import read_checkpoint, save_model
from . import common
from .codec_config import CodecConfig, MODES, PRESETS, PRESET_MODELS, build_model_config, resolve_config
from .losses import (BASIC_CONTAINER_BYTES, CONTAINER_BYTES, CodecObjective, MACHINE_HEADS, RateController,
                     build_identity)
from .machine_heads import LabelledImages

__all__ = ["MODES", "PRESETS", "PRESET_MODELS", "CodecConfig", "resolve_config", "build_model_config",
           "RateController", "CodecTrainer", "train_codec"]

class CodecTrainer:
    """Holds the model (+ D), optimisers, objective, rate controller and loop state."""

    def __init__(self, cfg: CodecConfig, info: common.DistInfo, checkpoint: dict[str, Any] | None = None, log=print):
        self.cfg, self.info, self.dev, self.log = cfg, info, info.device, log
        self.out = Path(cfg.out)
        if cfg.batch % info.world_size:
            raise StylecodecError(f"--batch {cfg.batch} is not divisible by the {info.world_size} processes")
        self.batch_gpu = cfg.batch // info.world_size
        self.amp = common.amp_dtype(self.dev, cfg.precision)
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.sources: dict[str, str | None] = {"prior": cfg.prior, "init": cfg.init}
        if checkpoint is None:
            prior, init_ck = self._load_sources()
            cfg.model_config = build_model_config(cfg, prior, init_ck["config"] if init_ck else None)
        self.model = StyleCodecModel(cfg.model_config)
        if checkpoint is None:
            if init_ck is not None:
                self.model.load_state_dict(init_ck["state_dict"])
            if prior is not None:
                try:
                    self.model.G.load_state_dict(prior.state_dict())
                except RuntimeError as e:
                    raise StylecodecError(f"the prior's generator does not fit the codec's generator config: "
                                          f"{str(e).splitlines()[0]}") from None
                self.model.sync_w_avg()
        self.model.to(self.dev)
        self.Q, self.R = self.model.num_qualities, self.model.resolution
        joint = cfg.mode == "joint"
        self.model.G.requires_grad_(joint)
        self.model.G.mapping.requires_grad_(False)
        syn = self.model.G.synthesis
        for res in syn.block_resolutions:
            getattr(syn, f"b{res}").use_fp16 = False  # training: bf16 autocast instead of fp16 blocks
        identity = build_identity(cfg.identity, self.dev, cfg.id_size, log=log)
        self.heads = torch.nn.ModuleDict({h: MACHINE_HEADS[h](self.model, identity).to(self.dev)
                                          for h in filter(None, cfg.heads.split(","))})
        codec_params = [p for n, p in self.model.named_parameters() if not n.startswith("G.")]
        groups = [{"params": codec_params + list(self.heads.parameters()), "lr": cfg.lr, "betas": (0.9, 0.99)}]
        if joint:
            groups.append({"params": list(self.model.G.synthesis.parameters()), "lr": cfg.g_lr, "betas": (0.0, 0.99)})
        self.params = [p for g in groups for p in g["params"]]
        self.opt = torch.optim.Adam(groups, eps=1e-8)
        self.D = self.opt_D = None
        if cfg.adv_weight > 0:
            self._build_discriminator()
        self.objective = CodecObjective(cfg.loss_weights(), self.Q, self.R, identity, cfg.perceptual,
                                        tuple(self.heads.values()), self.amp)
        target = cfg.target_bytes if cfg.target_bytes is not None else (
            int(cfg.target_bpp * self.R * self.R / 8) if cfg.target_bpp > 0 else None)
        self.rate = RateController(target, cfg.rate_control if target is not None else 0.0,
                                   margin_bytes=cfg.rate_margin)
        # The basic layer's own budget (the stream `stylecodec extract --layers basic` writes): an
        # extra rate weight on it that stays near zero (log scale LOW) while the layer fits.
        basic = int(cfg.target_basic_bpp * self.R * self.R / 8) if cfg.target_basic_bpp else None
        try:
            self.rate_basic = RateController(basic, cfg.rate_control if basic is not None else 0.0, margin_bytes=1.0,
                                             container_bytes=BASIC_CONTAINER_BYTES, log_scale=RateController.LOW)
        except StylecodecError as e:
            raise StylecodecError(f"--target-basic-bpp {cfg.target_basic_bpp:g} at {self.R}x{self.R}: {e}") from None
        self.step = self.images_seen = 0
        self.wall_time, self.last_val = 0.0, {}
        if checkpoint is not None:
            self.load_state(checkpoint)
        else:
            common.seed_everything(cfg.seed + 7919 * info.rank)
        common.broadcast_module(self.model, info)
        common.broadcast_module(self.heads, info)
        if self.D is not None:
            common.broadcast_module(self.D, info)
        self.set_train(True)

    # ------------------------------------------------------------ setup helpers
    def _load_sources(self):
        prior = load_official(self.cfg.prior) if self.cfg.prior else None
        init_ck = read_checkpoint(self.cfg.init) if self.cfg.init else None
        return prior, init_ck

    def _build_discriminator(self) -> None:
        gen = self.model.config["generator"]
        self.D = build_discriminator(self.R, channel_base=gen["channel_base"], channel_max=gen["channel_max"],
                                     num_fp16_res=0, conv_clamp=gen["conv_clamp"],
                                     mbstd_group_size=min(4, self.batch_gpu)).to(self.dev).requires_grad_(False)
        k = self.cfg.r1_interval / (self.cfg.r1_interval + 1)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=self.cfg.d_lr * k, betas=(0.0, 0.99 ** k), eps=1e-8)
        self.r1_gamma = self.cfg.r1_gamma if self.cfg.r1_gamma is not None else 0.0002 * self.R ** 2 / self.cfg.batch

    def set_train(self, flag: bool) -> None:
        """Train mode for the trained parts; a frozen G (and always the mapping net) stays in eval."""
        self.model.train(flag)
        self.heads.train(flag)
        if self.cfg.mode != "joint":
            self.model.G.eval()
        self.model.G.mapping.eval()

    # ------------------------------------------------------------ state
    def state_dict(self, stats: dict[str, float]) -> dict[str, Any]:
        s = {"kind": "stylecodec.codec", "step": self.step, "images_seen": self.images_seen,
             "wall_time": self.wall_time, "model": self.model.state_dict(), "optimiser": self.opt.state_dict(),
             "rate": self.rate.state_dict(), "rate_basic": self.rate_basic.state_dict(), "rng": common.rng_state(),
             "config": asdict(self.cfg), "stats": stats,
             "val": self.last_val, "sources": self.sources, "heads": self.heads.state_dict()}
        if self.D is not None:
            s.update(D=self.D.state_dict(), optimiser_D=self.opt_D.state_dict())
        return s

    def load_state(self, ck: dict[str, Any]) -> None:
        self.model.load_state_dict(ck["model"])
        self.heads.load_state_dict(ck.get("heads", {}))
        if "optimiser" in ck:
            self.opt.load_state_dict(ck["optimiser"])
        elif self.info.is_main:   # dropped for transfer (stylecodec.train.transfer --drop optimiser ...)
            print("[codec] checkpoint has no optimiser state: Adam restarts from zero moments", flush=True)
        if self.D is not None:
            self.D.load_state_dict(ck["D"])
            if "optimiser_D" in ck:
                self.opt_D.load_state_dict(ck["optimiser_D"])
        self.rate.load_state_dict(ck["rate"])
        if "rate_basic" in ck:                  # runs from before the basic-layer budget keep it off
            self.rate_basic.load_state_dict(ck["rate_basic"])
        self.step, self.images_seen, self.wall_time = ck["step"], ck["images_seen"], ck["wall_time"]
        self.last_val, self.sources = dict(ck.get("val", {})), dict(ck.get("sources", self.sources))
        common.restore_rng(ck["rng"], self.cfg.seed, self.info, self.step)

    def save(self, stats: dict[str, float]) -> Path | None:
        if not self.info.is_main:
            return None
        return common.save_checkpoint(self.out, self.step, self.state_dict(stats), keep=self.cfg.keep)

    def training_record(self, data_record: dict[str, Any]) -> dict[str, Any]:
        """The model card's training record (plain values)."""
        return {"trainer": "stylecodec train codec", "mode": self.cfg.mode, "steps": self.step,
                "images_seen": self.images_seen, "wall_time_s": round(self.wall_time, 1),
                "hardware": common.hardware_info(self.info), "config": asdict(self.cfg), "data": data_record,
                "sources": self.sources, "precision": "bf16-autocast" if self.amp else "fp32",
                "rate_control": {"target_bytes": self.rate.target, "margin_bytes": self.rate.margin,
                                 "basic_target_bytes": self.rate_basic.target, "basic_scale": self.rate_basic.scale,
                                 "scale": self.rate.scale,
                                 "coder_overhead_bytes": self.rate.overhead, "default_quality": self.Q - 1},
                "validation": self.last_val, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def export(self, data_record: dict[str, Any]) -> Path | None:
        """Write RUN_DIR/model.pt (zoo format, meta = training record; with the ``analysis`` heads
        when they trained along) and model.json (rank 0)."""
        if not self.info.is_main:
            return None

        meta = self.training_record(data_record)
        heads = self.heads["analysis"].heads if "analysis" in self.heads else None
        if heads is not None:
            heads.meta = {"trainer": f"stylecodec train codec ({self.cfg.mode}, D_machine term)", "steps": self.step}
        meta["storage"] = self.cfg.storage
        self.model.config["rate_budget"] = self.cfg.rate_budget(self.R)   # what Codec.compress does by default
        meta["fingerprint"] = save_model(self.model, self.out / "model.pt", meta, storage=self.cfg.storage,
                                         heads=heads)
        (self.out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        return self.out / "model.pt"

    # ------------------------------------------------------------ data
    @torch.no_grad()
    def generate(self, n: int, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(images [n, 3, R, R], true W+ [n, num_ws, w_dim]) from the frozen G (style mixing as in training)."""
        G, cfg = self.model.G, self.cfg
        z = torch.randn(n, G.z_dim, generator=gen).to(self.dev)
        ws = G.mapping(z, None, truncation_psi=cfg.truncation)
        mix = torch.rand([], generator=gen)
        if cfg.style_mixing > 0 and G.num_ws > 1 and float(mix) < cfg.style_mixing:
            cut = int(torch.randint(1, G.num_ws, [], generator=gen))
            z2 = torch.randn(n, G.z_dim, generator=gen).to(self.dev)
            ws = torch.cat([ws[:, :cut], G.mapping(z2, None, truncation_psi=cfg.truncation)[:, cut:]], 1)
        return self._synthesis(ws).clamp(-1, 1).float(), ws.float()

    def batches(self, dataset):
        """Endless (x, w or None, cached teacher labels (landmarks, found) or None) batches of this rank."""
        if self.cfg.mode == "pretrain-encoder":
            while True:
                yield (*self.generate(self.batch_gpu), None)
        workers = self.cfg.workers if self.cfg.workers is not None else common.default_workers(self.info)
        for b in common.infinite_batches(dataset, self.batch_gpu, self.info, self.cfg.seed, workers,
                                    self.images_seen // len(dataset)):
            yield (b[0], None, b[1:]) if isinstance(b, tuple) else (b, None, None)

    def sample_quality(self, n: int) -> torch.Tensor:
        """int64 [n]: the highest quality with probability p_default, else uniform."""
        q = torch.randint(0, self.Q, (n,))
        q[torch.rand(n) < self.cfg.p_default] = self.Q - 1
        return q.to(self.dev)

    # ------------------------------------------------------------ one step
    def _synthesis(self, ws: torch.Tensor, **kwargs) -> torch.Tensor:
        """G.synthesis(ws, noise_mode="const", **kwargs), under autocast (float32 out) when training in bf16."""
        if self.amp is None:
            return self.model.G.synthesis(ws, noise_mode="const", **kwargs)
        with common.autocast(self.dev, self.amp):
            return self.model.G.synthesis(ws, noise_mode="const", **kwargs).float()

    def render(self, ws: torch.Tensor) -> torch.Tensor:
        """Decoded faces [N, 3, R, R] of W+ (constant noise; fused modulated convs on CPU: faster there)."""
        return self._synthesis(ws, fused_modconv=True if self.dev.type == "cpu" else None)

    def run_D(self, img: torch.Tensor) -> torch.Tensor:
        """D's logits [N] (under autocast, float32 out, when training in bf16; R1 calls D in float32)."""
        if self.amp is None:
            return self.D(img, None).flatten()
        with common.autocast(self.dev, self.amp):
            return self.D(img, None).float().flatten()

    def decode_prefixes(self, out: dict) -> tuple[dict, dict | None, torch.Tensor | None]:
        """(x_hat {k: decodes}, subsets or None, images for D). Without prefix sampling every needed
        prefix is decoded for the whole batch; with it each sample is decoded once, at a prefix
        drawn from ``prefix_probs`` (one synthesis pass instead of three)."""
        probs = self.cfg.prefix_list()
        if not probs:
            need = set(self.objective.prefixes()) | ({3} if self.D is not None else set())
            x_hat = {k: self.render(out["ws_hat"][k]) for k in sorted(need)}
            return x_hat, None, x_hat.get(3)
        p = torch.tensor(probs) / sum(probs)
        n = out["ws"].shape[0]
        k_of = torch.multinomial(p, n, replacement=True).to(self.dev)
        ws = torch.stack([out["ws_hat"][k] for k in (1, 2, 3)])[k_of, torch.arange(n, device=self.dev)]
        x_all = self.render(ws)
        x_hat, subsets = {}, {}
        for k in (1, 2, 3):
            idx = (k_of == k - 1).nonzero().flatten()
            if len(idx):
                x_hat[k], subsets[k] = x_all[idx], (idx, len(idx) / (n * float(p[k - 1])))
        return x_hat, subsets, x_all

    def train_step(self, x: torch.Tensor, w_true: torch.Tensor | None = None,
                   labels: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        cfg, model = self.cfg, self.model
        q = self.sample_quality(x.shape[0])
        self.opt.zero_grad(set_to_none=True)
        out = model(x, q, n_layers=3, render=False, quant=cfg.quant, amp=self.amp)
        x_hat, subsets, fake = self.decode_prefixes(out)
        basic_scale = self.rate_basic.scale if self.rate_basic.enabled else 0.0
        loss, stats = self.objective(out, x, x_hat, w_true, self.rate.scale, subsets, labels, basic_scale)
        if self.D is not None:
            g_adv = functional.softplus(-self.run_D(fake)).mean()
            loss = loss + cfg.adv_weight * g_adv
            stats["Loss/adv/G"] = g_adv.detach()
        loss.backward()
        common.sync_grads(model, self.info)
        common.sync_grads(self.heads, self.info)
        if cfg.grad_clip > 0:
            stats["Grad/norm"] = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip).detach()
        self.opt.step()
        if self.D is not None:
            stats.update(self._d_step(x, fake.detach()))
        bits = StyleCodecModel.bits(out).detach()
        top = q == self.Q - 1
        # one collective for both controllers: (file bits, basic-layer bits, count) of highest-quality samples
        red = common.all_reduce_sum(torch.stack([bits.sum(1)[top].sum(), bits[top, 0].sum(), top.sum().float()]),
                               self.info).tolist()
        self.rate.update(red[0], red[2])
        if self.rate_basic.enabled:
            self.rate_basic.update(red[1], red[2])
            stats["Rate/basic_control_scale"] = torch.tensor(self.rate_basic.scale)
        if top.any():
            for l, name in enumerate(LAYER_NAMES):
                stats[f"Rate/default_q/bytes_{name}"] = bits[top, l].mean() / 8
            stats["Rate/default_q/file_bytes_est"] = bits[top].sum(1).mean() / 8 + CONTAINER_BYTES + self.rate.overhead
            stats["Rate/default_q/basic_file_bytes_est"] = (bits[top, 0].mean() / 8 + BASIC_CONTAINER_BYTES
                                                            + self.rate.overhead)
        stats["Rate/control_scale"] = torch.tensor(self.rate.scale)
        self.step += 1
        self.images_seen += cfg.batch
        return stats

    def _d_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Non-saturating D loss on (real, decoded) [+ lazy R1 every r1_interval steps]."""
        self.D.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        lf, lr = self.run_D(fake), self.run_D(real)
        loss = functional.softplus(lf).mean() + functional.softplus(-lr).mean()
        loss.backward()
        common.sync_grads(self.D, self.info)
        self.opt_D.step()
        stats = {"Loss/adv/D": loss.detach()}
        if self.r1_gamma > 0 and self.step % self.cfg.r1_interval == 0:
            self.opt_D.zero_grad(set_to_none=True)
            x = real.detach().requires_grad_(True)
            grads, = torch.autograd.grad(self.D(x, None).sum(), x, create_graph=True)
            r1 = grads.square().sum([1, 2, 3])
            (r1.mean() * (self.r1_gamma / 2) * self.cfg.r1_interval).backward()
            common.sync_grads(self.D, self.info)
            self.opt_D.step()
            stats["Loss/adv/r1"] = r1.mean().detach()
        self.D.requires_grad_(False)
        return stats

    # ------------------------------------------------------------ validation
    @torch.no_grad()
    def decode_all(self, x: torch.Tensor, quality: int) -> tuple[dict, dict[int, torch.Tensor]]:
        """Exact coding emulation (quant 'ste') at one quality: (forward output, {k: x̂_k in [-1, 1]})."""
        out = self.model(x, quality, render=False, quant="ste", amp=self.amp)
        return out, {k: self.render(out["ws_hat"][k]).clamp(-1, 1) for k in (1, 2, 3)}

    @torch.no_grad()
    def validate(self, val_x: torch.Tensor, val_w: torch.Tensor | None, coder: bool) -> dict[str, float]:
        """Mean rate per layer and quality of the decodes on the held-out images (rank 0)."""
        self.set_train(False)
        acc: dict[str, list[torch.Tensor]] = {}

        def add(k, v):
            acc.setdefault(k, []).append(v.detach().float().cpu().reshape(-1))

        ident = self.objective.identity
        for i in range(0, len(val_x), self.batch_gpu):
            x = val_x[i:i + self.batch_gpu].to(self.dev)
            out, x_hat = self.decode_all(x, self.Q - 1)
            bits = StyleCodecModel.bits(out)
            for l, name in enumerate(LAYER_NAMES):
                add(f"Val/bytes_{name}", bits[:, l] / 8)
            add("Val/bpp", bits.sum(1) / self.R ** 2)
            add("Val/q0/bytes", StyleCodecModel.bits(self.model(x, 0, render=False, quant="ste", amp=self.amp)).sum(1) / 8)
            e_x = ident(x) if ident is not None else None
            for k, name in zip((1, 2, 3), ("1_basic", "2_middle", "3_all")):
                add(f"Val/psnr/{name}", psnr((x_hat[k] + 1) / 2, (x + 1) / 2))
                if self.cfg.perceptual != "none":
                    add(f"Val/lpips/{name}", lpips_distance(x_hat[k], x, self.cfg.perceptual))
                if e_x is not None:
                    add(f"Val/identity_cos/{name}", (e_x * ident(x_hat[k])).sum(1))
            if val_w is not None:
                add("Val/latent_mse_vs_w", functional.mse_loss(out["ws"], val_w[i:i + len(x)].to(self.dev),
                                                      reduction="none").flatten(1).mean(1))
        stats = {k: float(torch.cat(v).mean()) for k, v in acc.items()}
        stats["Val/file_bytes_est"] = (sum(stats[f"Val/bytes_{n}"] for n in LAYER_NAMES) + CONTAINER_BYTES
                                       + self.rate.overhead)
        if coder:
            stats.update(self.coder_check(val_x[:self.cfg.coder_images]))
        self.set_train(True)
        return stats

    @torch.no_grad()
    def coder_check(self, x: torch.Tensor) -> dict[str, float]:
        """Real compression of a few faces (highest quality and quality 0): bytes per layer and file;
        re-calibrates the rate controller's coder overhead."""
        codec = Codec(self.model)
        ys = codec.encode_latents(x.to(self.dev))
        stats: dict[str, float] = {}
        for q, tag in ((self.Q - 1, "coder"), (0, "coder_q0")):
            info: list = []
            streams = codec.compress_latents(ys, q, stats=info)
            payloads = [unpack(s)[1] for s in streams]
            stats[f"Val/{tag}/file_bytes"] = sum(map(len, streams)) / len(streams)
            for l, name in enumerate(LAYER_NAMES):
                stats[f"Val/{tag}/bytes_{name}"] = sum(len(p[l]) for p in payloads) / len(payloads)
            if q == self.Q - 1:
                payload = sum(sum(map(len, p)) for p in payloads) / len(payloads)
                ideal = sum(sum(i["ideal_bits"]) for i in info) / len(info) / 8
                self.rate.calibrate(payload, ideal)
                self.rate_basic.calibrate(sum(len(p[0]) for p in payloads) / len(payloads),
                                          sum(i["ideal_bits"][0] for i in info) / len(info) / 8)
                stats["Val/coder/overhead_bytes"] = self.rate.overhead
                stats["Val/coder/overhead_bytes_basic"] = self.rate_basic.overhead
        return stats

    @torch.no_grad()
    def grid(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of original | basic | +middle | all at the highest quality: [4n, 3, R, R]."""
        self.set_train(False)
        _, x_hat = self.decode_all(x.to(self.dev), self.Q - 1)
        self.set_train(True)
        return torch.stack([x.to(self.dev), x_hat[1], x_hat[2], x_hat[3]], 1).flatten(0, 1)

    # ------------------------------------------------------------ the loop
    def run(self, dataset, val_x: torch.Tensor, val_w: torch.Tensor | None, data_record: dict[str, Any]) -> int:
        """Train until ``cfg.kimg`` (or ``max_minutes``, or a signal). Returns an exit status."""
        cfg, info = self.cfg, self.info
        log = common.RunLogger(self.out, info)
        total = int(cfg.kimg * 1000)
        batches = self.batches(dataset)
        timer, session = common.Timer(self.wall_time), common.Timer()
        acc: dict[str, list] = {}
        last: dict[str, float] = {}
        tick_t, tick_img, saved_step, n_val = session(), self.images_seen, None, self.step // cfg.val_every
        snap = val_x[:8]
        if self.images_seen == 0:
            log.images("decodes", self.grid(snap), 0, nrow=4, png="samples/decodes000000.png")
        log.print(f"[codec] {cfg.mode}: {'resuming at step ' + str(self.step) if self.step else 'start'}; "
                  f"{self.R}px, {data_record.get('train_images', 'generated')} train images, batch {cfg.batch} = "
                  f"{info.world_size} x {self.batch_gpu}, device {self.dev}, {'bf16' if self.amp else 'fp32'}, "
                  f"target {cfg.kimg} kimg, highest-quality file target {self.rate.target} bytes")
        bar = common.progress(total, min(self.images_seen, total), info, f"codec/{cfg.mode}")
        status, reason = 0, "done"
        try:
            with common.StopSignal() as stop:
                while self.images_seen < total:
                    halt = stop.check(session(), cfg.max_minutes, info)
                    if halt is not None:
                        status, reason = halt
                        break
                    x, w, labels = next(batches)
                    stats = self.train_step(x, w, labels)
                    bar.update(cfg.batch)
                    for k, v in stats.items():
                        a = acc.setdefault(k, [0.0, 0])
                        a[0], a[1] = a[0] + v, a[1] + 1
                    self.wall_time = timer()
                    if self.step % cfg.log_every == 0 or self.images_seen >= total:
                        last = self._log_tick(log, bar, acc, session() - tick_t, self.images_seen - tick_img)
                        acc, tick_t, tick_img = {}, session(), self.images_seen
                    if self.step % cfg.val_every == 0:
                        n_val += 1
                        if info.is_main:
                            self.last_val = self.validate(val_x, val_w, coder=n_val % cfg.coder_every == 0)
                            log.scalars(self.last_val, self.images_seen)
                        self._sync_rate()
                    if self.step % cfg.snap_every == 0:
                        log.images("decodes", self.grid(snap), self.images_seen, nrow=4,
                                   png=f"samples/decodes{self.step:06d}.png")
                    if self.step % cfg.ckpt_every == 0:
                        log.print(f"[codec] checkpoint {self.save(last)}")
                        saved_step = self.step
            if status == 0 and info.is_main:
                self.last_val = self.validate(val_x, val_w, coder=True)
                log.scalars(self.last_val, self.images_seen)
                log.images("decodes", self.grid(snap), self.images_seen, nrow=4, png="samples/decodes_final.png")
                log.print("[codec] validation: " + ", ".join(f"{k[4:]} {v:.4g}"
                                                              for k, v in sorted(self.last_val.items())))
            if saved_step != self.step:
                path = self.save(last)
                if path:
                    log.print(f"[codec] checkpoint {path}")
            if status == 0:
                path = self.export(data_record)
                if path:
                    log.print(f"[codec] {reason} at step {self.step} ({self.images_seen / 1000:.2f} kimg); "
                              f"model written to {path}")
            else:
                log.print(f"[codec] stopped by {reason} at step {self.step}; continue with --resume auto")
        finally:
            bar.close()
            log.close()
        return status

    def _sync_rate(self) -> None:
        """Rank 0's rate-controller state (re-calibrated by its coder checks) to every rank."""
        if self.info.distributed:
            t = torch.tensor([self.rate.log_scale, self.rate.overhead, self.rate_basic.log_scale,
                              self.rate_basic.overhead], dtype=torch.float64, device=self.dev)
            torch.distributed.broadcast(t, src=0)
            self.rate.log_scale, self.rate.overhead, self.rate_basic.log_scale, self.rate_basic.overhead = t.tolist()

    def _log_tick(self, log: common.RunLogger, bar, acc: dict[str, list], seconds: float, images: int) -> dict[str, float]:
        stats = {k: float(s) / c for k, (s, c) in acc.items()}
        speed = images / max(seconds, 1e-9)
        stats.update({"Timing/images_per_s": speed, "Timing/wall_hours": self.wall_time / 3600,
                      "Progress/kimg": self.images_seen / 1000, "Progress/step": float(self.step)})
        if self.dev.type == "cuda":
            stats["Resources/peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(self.dev) / 2**30
        if not all(math.isfinite(v) for v in stats.values()):
            raise StylecodecError(f"training diverged at step {self.step}: {stats}")
        log.scalars(stats, self.images_seen)
        post = {"loss": f"{stats['Loss/total']:.3f}", "bpp": f"{stats['Rate/bpp']:.4f}", "img/s": f"{speed:.2f}"}
        if "Rate/default_q/file_bytes_est" in stats:
            post["B@q"] = f"{stats['Rate/default_q/file_bytes_est']:.0f}"
        bar.set_postfix(post, refresh=False)
        return stats


def _validation_set(trainer: CodecTrainer, cfg: CodecConfig, source: str | None):
    """Fixed validation images (and true w when generated): the first ``val_images`` of the val split."""
    if cfg.mode == "pretrain-encoder":
        gen = torch.Generator().manual_seed(cfg.seed + 12345)
        xs, ws = zip(*(trainer.generate(min(8, cfg.val_images - i), gen) for i in range(0, cfg.val_images, 8)))
        return torch.cat(xs).cpu(), torch.cat(ws).cpu(), {"validation": "generated", "val_images": cfg.val_images}

    val = open_dataset(source, trainer.R, "val", cfg.val_count)
    n = min(cfg.val_images, len(val))
    return torch.stack([val[i] for i in range(n)]), None, {"val_images_used": n, "val_split_size": len(val)}


def train_codec(given: dict[str, Any], preset: str | None = None, resume: str | None = None) -> int:
    """Set up processes, data and networks from CLI-style options, then train. Returns an exit status.

    ``resume``: None (refuse a RUN_DIR holding checkpoints), 'auto' (newest readable checkpoint
    in RUN_DIR, or a fresh start) or a checkpoint path.
    """
    if not given.get("out"):
        raise StylecodecError("--out RUN_DIR is required")
    out = Path(given["out"])
    info = common.init_distributed(given.get("device") or "auto")
    say = print if info.is_main else (lambda *_: None)
    ok = False
    try:
        ckpt = common.checkpoint_to_resume(out, resume, "stylecodec.codec", log=say)
        cfg = resolve_config(given, preset, ckpt["config"] if ckpt else None)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.mode != "pretrain-encoder" and not cfg.data:
            cfg.data = str(default_data_root())
        trainer = CodecTrainer(cfg, info, ckpt, log=say)
        del ckpt
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        dataset, record = None, {"source": cfg.data, "split_rule": f"files sorted by name; the last {cfg.val_count} "
                                 "are validation, the rest train", "val_count": cfg.val_count}
        if cfg.mode != "pretrain-encoder":
            if cfg.teacher_labels:                 # cached dlib points instead of dlib in the loop
                dataset = LabelledImages(open_dataset(cfg.data, trainer.R, "train", cfg.val_count, False),
                                         cfg.teacher_labels, cfg.xflip)
                record["teacher_labels"] = os.path.basename(cfg.teacher_labels)
            else:
                dataset = open_dataset(cfg.data, trainer.R, "train", cfg.val_count, cfg.xflip)
            record["train_images"] = len(dataset)
        else:
            record["train_images"] = "generated by the frozen prior"
        val_x, val_w, val_record = _validation_set(trainer, cfg, cfg.val_data or cfg.data)
        record.update(val_record)
        status = trainer.run(dataset, val_x, val_w, record)
        ok = True
        return status
    finally:
        common.cleanup_distributed(info, barrier=ok)
