"""Adversarial training of the StyleGAN2 prior G (stylegan2-ada-pytorch recipe, DiffAugment instead of ADA).

One step = G main (non-saturating logistic loss) [+ path-length reg every ``pl_interval``]
+ D main (logistic loss on real and fake) [+ R1 on reals every ``r1_interval``, lazy, weighted
by the interval]. Adam(lr, betas=(0, 0.99)) with the lazy-regularisation corrections of
the official code; style mixing; G_ema with ramp-up. Images are ``[N, 3, R, R]`` in ``[-1, 1]``;
``batch`` is global (split over processes); budgets are in kimg (thousands of real images
shown to D). The result, G_ema, is written with ``stylecodec.gan.official.save_checkpoint``
to ``RUN_DIR/prior.pt``.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from ..data import default_data_root, open_dataset
from ..errors import StylecodecError
from ..gan import Discriminator, Generator, discriminator_kwargs, generator_kwargs, official
from . import common
from .augment import OPS as AUGMENT_OPS, diff_augment
from .presets import PRIOR_PRESETS as PRESETS

__all__ = ["PRESETS", "RUN_CONTROL", "PriorConfig", "resolve_config", "PriorTrainer", "train_prior"]

# Shared defaults; presets override them, explicit options override presets.
DEFAULTS: dict[str, Any] = dict(
    z_dim=512, w_dim=512, map_layers=8, mbstd_group=4, conv_clamp=256, lr=0.0025, r1_interval=16,
    pl_weight=0.0, pl_interval=4, style_mixing=0.9, ema_rampup=0.05, augment="color,translation,cutout",
    xflip=True, val_count=1000, seed=0, keep=2, device="auto", precision="auto", workers=None,
    max_minutes=None, log_kimg=1.0, snap_kimg=10.0, ckpt_kimg=10.0)

# Options that may change when a run is resumed; all others must match the checkpoint.
RUN_CONTROL = {"data", "out", "kimg", "keep", "device", "precision", "workers", "max_minutes", "log_kimg",
               "snap_kimg", "ckpt_kimg", "preset"}


@dataclass
class PriorConfig:
    """Everything a run needs; stored in each checkpoint (``config``) and in RUN_DIR/config.json."""
    data: str
    out: str
    resolution: int
    batch: int
    kimg: float
    channel_base: int
    channel_max: int
    r1_gamma: float
    ema_kimg: float
    z_dim: int
    w_dim: int
    map_layers: int
    mbstd_group: int
    conv_clamp: int
    lr: float
    r1_interval: int
    pl_weight: float
    pl_interval: int
    style_mixing: float
    ema_rampup: float | None
    augment: str
    xflip: bool
    val_count: int
    seed: int
    keep: int
    device: str
    precision: str
    workers: int | None
    max_minutes: float | None
    log_kimg: float
    snap_kimg: float
    ckpt_kimg: float
    preset: str | None = None

    def validate(self) -> None:
        r = self.resolution
        if r < 4 or r & (r - 1):
            raise StylecodecError(f"--resolution must be a power of two >= 4, not {r}")
        for name in ("batch", "z_dim", "w_dim", "map_layers", "channel_base", "channel_max", "r1_interval",
                     "pl_interval"):
            if getattr(self, name) < 1:
                raise StylecodecError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("kimg", "log_kimg", "snap_kimg", "ckpt_kimg"):
            if getattr(self, name) < 0.001:
                raise StylecodecError(f"--{name.replace('_', '-')} must be at least 0.001 (one image)")
        for op in filter(None, (p.strip() for p in self.augment.split(","))):
            if op not in AUGMENT_OPS:
                raise StylecodecError(f"unknown --augment op {op!r}; choose from {', '.join(AUGMENT_OPS)}")

    def generator_kwargs(self) -> dict[str, Any]:
        return generator_kwargs(self.resolution, self.channel_base, self.channel_max, self.z_dim, self.w_dim,
                                self.map_layers, num_fp16_res=0, conv_clamp=self.conv_clamp or None)

    def discriminator_kwargs(self) -> dict[str, Any]:
        return discriminator_kwargs(self.resolution, self.channel_base, self.channel_max, num_fp16_res=0,
                                    conv_clamp=self.conv_clamp or None, mbstd_group_size=self.mbstd_group)


def resolve_config(given: dict[str, Any], preset: str | None = None,
                   checkpoint_config: dict[str, Any] | None = None) -> PriorConfig:
    """Defaults < preset < ``given`` options (None = not given). When resuming, the checkpoint's
    config replaces defaults and preset; a given option outside :data:`RUN_CONTROL` must match it."""
    given = {k: v for k, v in given.items() if v is not None}
    if checkpoint_config is not None:
        cfg = common.merge_resumed_config(checkpoint_config, given, RUN_CONTROL)
    else:
        if preset is not None and preset not in PRESETS:
            raise StylecodecError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        cfg = {**DEFAULTS, **(PRESETS[preset] if preset else {}), **given, "preset": preset}
        if "resolution" in cfg and "batch" in cfg:  # official 'auto' config
            cfg.setdefault("r1_gamma", 0.0002 * cfg["resolution"] ** 2 / cfg["batch"])
            cfg.setdefault("ema_kimg", cfg["batch"] * 10 / 32)
        missing = [f.name for f in fields(PriorConfig) if f.name not in cfg]
        if missing:
            raise StylecodecError("without --preset, also give " + ", ".join("--" + m.replace("_", "-")
                                                                              for m in missing))
    known = {f.name for f in fields(PriorConfig)}
    config = PriorConfig(**{k: v for k, v in cfg.items() if k in known})
    config.validate()
    return config


class PriorTrainer:
    """Holds G, D, G_ema, their optimisers and the loop state; :meth:`run` trains to ``cfg.kimg``."""

    def __init__(self, cfg: PriorConfig, info: common.DistInfo, checkpoint: dict[str, Any] | None = None):
        self.cfg, self.info, self.dev = cfg, info, info.device
        self.out = Path(cfg.out)
        if cfg.batch % info.world_size:
            raise StylecodecError(f"--batch {cfg.batch} is not divisible by the {info.world_size} processes")
        self.batch_gpu = cfg.batch // info.world_size
        if self.batch_gpu % min(cfg.mbstd_group, self.batch_gpu):
            raise StylecodecError(f"the per-process batch {self.batch_gpu} is not a multiple of --mbstd-group "
                                  f"{cfg.mbstd_group}")
        self.amp = common.amp_dtype(self.dev, cfg.precision)
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.G = Generator(**cfg.generator_kwargs()).to(self.dev).train()
        self.D = Discriminator(**cfg.discriminator_kwargs()).to(self.dev).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = self._adam(self.G, cfg.pl_interval if cfg.pl_weight > 0 else None)
        self.opt_D = self._adam(self.D, cfg.r1_interval)
        self.pl_mean = torch.zeros([], device=self.dev)
        self.step = self.images_seen = 0
        self.wall_time = 0.0
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.grid_z = torch.randn(32 if cfg.resolution <= 128 else 16, cfg.z_dim, generator=gen).to(self.dev)
        if checkpoint is not None:
            self.load_state(checkpoint)
        else:
            common.seed_everything(cfg.seed + 7919 * info.rank)
        for m in (self.G, self.D, self.G_ema):
            common.broadcast_module(m, info)

    def _adam(self, net: torch.nn.Module, reg_interval: int | None) -> torch.optim.Adam:
        """Adam(lr, betas=(0, 0.99)); with lazy regularisation every k steps, lr and betas are
        scaled by k/(k+1) as in the official code."""
        ratio = reg_interval / (reg_interval + 1) if reg_interval else 1.0
        return torch.optim.Adam(net.parameters(), lr=self.cfg.lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)

    # ------------------------------------------------------------ state
    def state_dict(self, stats: dict[str, float]) -> dict[str, Any]:
        return {"step": self.step, "images_seen": self.images_seen, "wall_time": self.wall_time,
                "nets": {"G": self.G.state_dict(), "D": self.D.state_dict()}, "ema": self.G_ema.state_dict(),
                "optimisers": {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict()},
                "pl_mean": self.pl_mean.detach().cpu(), "rng": common.rng_state(), "config": asdict(self.cfg),
                "stats": stats, "hardware": common.hardware_info(self.info), "kind": "stylecodec.prior"}

    def load_state(self, ck: dict[str, Any]) -> None:
        self.G.load_state_dict(ck["nets"]["G"])
        self.D.load_state_dict(ck["nets"]["D"])
        self.G_ema.load_state_dict(ck["ema"])
        if "optimisers" in ck:
            self.opt_G.load_state_dict(ck["optimisers"]["G"])
            self.opt_D.load_state_dict(ck["optimisers"]["D"])
        elif self.info.is_main:   # dropped for transfer (stylecodec.train.transfer --drop optimisers)
            print("[prior] checkpoint has no optimiser state: Adam restarts from zero moments", flush=True)
        self.pl_mean.copy_(ck["pl_mean"])
        self.step, self.images_seen, self.wall_time = ck["step"], ck["images_seen"], ck["wall_time"]
        common.restore_rng(ck["rng"], self.cfg.seed, self.info, self.step)

    def save(self, stats: dict[str, float]) -> Path | None:
        if not self.info.is_main:
            return None
        return common.save_checkpoint(self.out, self.step, self.state_dict(stats), keep=self.cfg.keep)

    def export(self) -> Path | None:
        """Write G_ema to RUN_DIR/prior.pt (rank 0)."""
        if not self.info.is_main:
            return None

        path = self.out / "prior.pt"
        official.save_checkpoint(self.G_ema, path)
        return path

    # ------------------------------------------------------------ one training step
    def run_G(self, z: torch.Tensor, G: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [N, z_dim]`` -> (images ``[N, 3, R, R]``, ws ``[N, num_ws, w_dim]``) with style mixing."""
        G = G or self.G
        c = z.new_zeros(z.shape[0], 0)
        ws = G.mapping(z, c)
        p = self.cfg.style_mixing
        if p > 0 and G.num_ws > 1 and float(torch.rand([])) < p:
            cutoff = int(torch.randint(1, G.num_ws, []))
            ws2 = G.mapping(torch.randn_like(z), c, skip_w_avg_update=True)
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return G.synthesis(ws, noise_mode="random"), ws

    def run_D(self, img: torch.Tensor) -> torch.Tensor:
        """Augmented logits ``[N]``."""
        img = diff_augment(img, self.cfg.augment)
        return self.D(img, img.new_zeros(img.shape[0], 0)).flatten()

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, n, stats = self.cfg, real.shape[0], {}
        z = lambda k=n: torch.randn(k, cfg.z_dim, device=self.dev)  # noqa: E731
        # G main: softplus(-D(G(z)))
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        with common.autocast(self.dev, self.amp):
            fake, _ = self.run_G(z())
            loss_G = functional.softplus(-self.run_D(fake)).mean()
        loss_G.backward()
        stats["Loss/G/loss"] = loss_G.detach()
        if cfg.pl_weight > 0 and self.step % cfg.pl_interval == 0:  # lazy path-length reg (fp32)
            fake, ws = self.run_G(z(max(n // 2, 1)))
            noise = torch.randn_like(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
            grads, = torch.autograd.grad((fake * noise).sum(), ws, create_graph=True)
            lengths = grads.square().sum(2).mean(1).sqrt()
            self.pl_mean.copy_(self.pl_mean.lerp(lengths.mean().detach(), 0.01))
            penalty = (lengths - self.pl_mean).square()
            (penalty.mean() * cfg.pl_weight * cfg.pl_interval).backward()
            stats["Loss/pl_penalty"] = penalty.mean().detach()
        common.sync_grads(self.G, self.info)
        self.opt_G.step()
        # D main: softplus(D(G(z))) + softplus(-D(x))
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        with common.autocast(self.dev, self.amp):
            with torch.no_grad():
                fake, _ = self.run_G(z())
            logits_fake, logits_real = self.run_D(fake), self.run_D(real)
            loss_D = functional.softplus(logits_fake).mean() + functional.softplus(-logits_real).mean()
        loss_D.backward()
        stats.update({"Loss/D/loss": loss_D.detach(), "Loss/scores/fake": logits_fake.detach().float().mean(),
                      "Loss/scores/real": logits_real.detach().float().mean()})
        common.sync_grads(self.D, self.info)
        self.opt_D.step()
        if cfg.r1_gamma > 0 and self.step % cfg.r1_interval == 0:  # lazy R1 on reals (fp32)
            self.opt_D.zero_grad(set_to_none=True)
            x = real.detach().requires_grad_(True)
            grads, = torch.autograd.grad(self.run_D(x).sum(), x, create_graph=True)
            r1 = grads.square().sum([1, 2, 3])
            (r1.mean() * (cfg.r1_gamma / 2) * cfg.r1_interval).backward()
            stats["Loss/r1_penalty"] = r1.mean().detach()
            common.sync_grads(self.D, self.info)
            self.opt_D.step()
        self.step += 1
        self.images_seen += cfg.batch
        self.update_ema()
        return stats

    @torch.no_grad()
    def update_ema(self) -> float:
        """G_ema <- beta G_ema + (1-beta) G, half-life ema_kimg (ramped up over the first images)."""
        ema_nimg = self.cfg.ema_kimg * 1000
        if self.cfg.ema_rampup:
            ema_nimg = min(ema_nimg, self.images_seen * self.cfg.ema_rampup)
        beta = 0.5 ** (self.cfg.batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)
        return beta

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        """G_ema on the fixed grid of z, constant noise: ``[K, 3, R, R]``."""
        c = self.grid_z.new_zeros(self.grid_z.shape[0], 0)
        return torch.cat([self.G_ema(z, cc, noise_mode="const").float()
                          for z, cc in zip(self.grid_z.split(8), c.split(8))])

    # ------------------------------------------------------------ the loop
    def run(self, dataset) -> int:
        """Train until ``cfg.kimg`` (or ``max_minutes``, or a signal). Returns an exit status."""
        cfg, info = self.cfg, self.info
        log = common.RunLogger(self.out, info)
        total = int(cfg.kimg * 1000)
        workers = cfg.workers if cfg.workers is not None else common.default_workers(info)
        batches = common.infinite_batches(dataset, self.batch_gpu, info, cfg.seed, workers, self.images_seen // len(dataset))
        timer, session = common.Timer(self.wall_time), common.Timer()
        marks = {k: self.images_seen // int(getattr(cfg, k) * 1000) for k in ("log_kimg", "snap_kimg", "ckpt_kimg")}
        acc: dict[str, list] = {}
        last: dict[str, float] = {}
        tick_t, tick_img, saved_step = session(), self.images_seen, None
        if self.images_seen == 0:
            reals = torch.stack([dataset[i] for i in range(0, len(dataset), max(1, len(dataset) // 32))][:32])
            log.images("reals", reals, 0, png="samples/reals.png")
            log.images("fakes", self.samples(), 0, png="samples/fakes000000.png")
        log.print(f"[prior] {'resuming at ' + str(self.images_seen / 1000) + ' kimg' if self.images_seen else 'start'}"
                  f": {len(dataset)} train images, {cfg.resolution}px, batch {cfg.batch} = {info.world_size} x "
                  f"{self.batch_gpu}, device {self.dev}, {'bf16' if self.amp else 'fp32'}, target {cfg.kimg} kimg")
        bar = common.progress(total, min(self.images_seen, total), info, "prior")
        status, reason = 0, "done"
        try:
            with common.StopSignal() as stop:
                while self.images_seen < total:
                    halt = stop.check(session(), cfg.max_minutes, info)
                    if halt is not None:
                        status, reason = halt
                        break
                    stats = self.train_step(next(batches))
                    bar.update(cfg.batch)
                    for k, v in stats.items():
                        a = acc.setdefault(k, [0.0, 0])
                        a[0], a[1] = a[0] + v, a[1] + 1
                    self.wall_time = timer()
                    due = {k: self.images_seen // int(getattr(cfg, k) * 1000) > marks[k] for k in marks}
                    marks = {k: self.images_seen // int(getattr(cfg, k) * 1000) for k in marks}
                    if due["log_kimg"] or self.images_seen >= total:
                        last = self._log_tick(log, bar, acc, session() - tick_t, self.images_seen - tick_img)
                        acc, tick_t, tick_img = {}, session(), self.images_seen
                    if due["snap_kimg"]:
                        log.images("fakes", self.samples(), self.images_seen,
                                   png=f"samples/fakes{self.images_seen // 1000:06d}.png")
                    if due["ckpt_kimg"]:
                        log.print(f"[prior] checkpoint {self.save(last)}")
                        saved_step = self.step
            if saved_step != self.step:
                path = self.save(last)
                if path:
                    log.print(f"[prior] checkpoint {path}")
            if status == 0:
                if self.images_seen >= total:
                    log.images("fakes", self.samples(), self.images_seen, png="samples/fakes_final.png")
                path = self.export()
                if path:
                    log.print(f"[prior] {reason} at {self.images_seen / 1000:.1f} kimg; G_ema written to {path}")
            else:
                log.print(f"[prior] stopped by {reason} at {self.images_seen / 1000:.1f} kimg (step {self.step}); "
                          f"continue with --resume auto")
        finally:
            bar.close()
            log.close()
        return status


    def _log_tick(self, log: common.RunLogger, bar, acc: dict[str, list], seconds: float, images: int) -> dict[str, float]:
        """Mean losses since the last tick + timing -> TensorBoard and the progress bar; returns them."""
        stats = {k: float(s) / c for k, (s, c) in acc.items()}
        speed = images / max(seconds, 1e-9)
        stats.update({"Timing/images_per_s": speed, "Timing/sec_per_kimg": 1000 / max(speed, 1e-9),
                      "Timing/wall_hours": self.wall_time / 3600, "Progress/kimg": self.images_seen / 1000})
        if self.dev.type == "cuda":
            stats["Resources/peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(self.dev) / 2**30
        if not all(math.isfinite(v) for v in stats.values()):
            raise StylecodecError(f"training diverged at step {self.step}: {stats}")
        log.scalars(stats, self.images_seen)
        bar.set_postfix({"G": f"{stats['Loss/G/loss']:.3f}", "D": f"{stats['Loss/D/loss']:.3f}",
                         "img/s": f"{speed:.1f}"}, refresh=False)
        return stats


def train_prior(given: dict[str, Any], preset: str | None = None, resume: str | None = None) -> int:
    """Set up processes, data and networks from CLI-style options, then train. Returns an exit status.

    ``resume``: None (refuse to reuse a RUN_DIR holding checkpoints), 'auto' (newest readable
    checkpoint in RUN_DIR, or a fresh start), or a checkpoint path.
    """
    if not given.get("out"):
        raise StylecodecError("--out RUN_DIR is required")
    out = Path(given["out"])
    info = common.init_distributed(given.get("device") or "auto")
    ok = False
    try:
        say = print if info.is_main else (lambda *_: None)
        ckpt = common.checkpoint_to_resume(out, resume, "stylecodec.prior", log=say)
        given = {**given, "data": given.get("data") or str(default_data_root())}
        cfg = resolve_config(given, preset, ckpt["config"] if ckpt else None)
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        dataset = open_dataset(cfg.data, cfg.resolution, "train", cfg.val_count, cfg.xflip)
        trainer = PriorTrainer(cfg, info, ckpt)
        del ckpt
        status = trainer.run(dataset)
        ok = True
        return status
    finally:
        common.cleanup_distributed(info, barrier=ok)
