"""``stylecodec train refiner``: teach a machine-first model's decoder to improve on eigenfaces.

Everything but the :class:`~stylecodec.refiner.Refiner` stays frozen (PCA models, gains, LSET:
the bitstream of a face does not change, only what the decoder makes of it). Each step:

1. a batch of training faces (or their mirrors) at P x P and their cached latents
   (``RUN_DIR/latents.npz`` of the machine-first run, else computed), a random quality each
   (uniform, or drawn with ``quality_probs``, e.g. as often as the default rate budget picks each);
2. ŷ as the decoder gets it (``GroupCoder`` emulation: rounded around the LSET's means), and a
   random layer prefix (basic / + middle / all; missing layers predicted by the LSET's means);
3. x_hat = refiner(eigenface image, ŷ) and the loss
   ``|x_hat - x|_1 + w_mse · |x_hat - x|² + w_lpips · LPIPS-Alex + w_id · (1 - cos(facenet(x_hat), facenet(x)))``
   (facenet's embedding of the original: the cached teacher output; the decoded face goes through
   facenet with gradients), ``+ w_adv ·`` the hinge loss of a projected discriminator
   (:mod:`stylecodec.train.projected_d`; trained in the same step on x and x_hat) when ``w_adv > 0``.

Every ``eval_every`` steps the first ``eval_images`` held-out faces are decoded at quality
``eval_quality`` from all layers (256², as users get them) and scored: PSNR, LPIPS-Alex and facenet
cosine, appended to ``RUN_DIR/metrics.csv`` with images seen and CPU hours (the learning curve).
With ``ema_kimg > 0`` the evaluated and saved weights are an exponential moving average of the
trained ones (:class:`WeightAverage`, StyleGAN's G_ema); the raw weights are scored too, in
``RUN_DIR/metrics_raw.csv``. Resumable (``--resume auto``, the average included), saves on SIGINT /
SIGTERM and every ``save_every`` steps; the model with its refiner is written to ``RUN_DIR/model.pt``
at every evaluation.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..analysis.face_teachers import utkface_teachers
from ..assets.facenet import load_facenet, preprocess
from ..assets.lpips import load_lpips
from ..data import default_data_root, list_images, pixel_array, split_files
from ..errors import StylecodecError
from ..files import write_bytes
from ..machine_first import MachineFirstModel
from ..refiner_weights import load_refiner_weights, read_refiner_weights, with_refiner
from ..zoo import load, save_model
from . import common
from .machine_first import check_latents, training_latents
from .projected_d import ProjectedDiscriminator, d_loss, g_loss

KIND = "stylecodec.refiner"

__all__ = ["RefinerConfig", "train_refiner", "transfer_refiner", "pca_signs", "face_latents", "score_faces", "KIND"]


@dataclass
class RefinerConfig:
    model: str                               # the machine-first model (registry name or path)
    out: str                                 # run folder
    latents: str = ""                        # latents.npz of the machine-first run (default: computed)
    init_refiner: str = ""                   # start from the refiner of this machine-first model (same widths)
    data: str = ""
    val_count: int = 1000
    batch: int = 8
    lr: float = 2e-4
    ema_kimg: float = 0.0                    # half-life (thousand images) of the evaluated and exported weights'
                                             # exponential moving average (G_ema of StyleGAN); 0: the raw weights
    w_lpips: float = 1.0
    w_mse: float = 0.0                       # weight of the squared error (images in [-1, 1]); PSNR's own loss
    w_id: float = 0.1
    w_adv: float = 0.0                       # weight of the projected discriminator's hinge loss (0: no GAN)
    d_lr: float = 2e-4                       # its Adam learning rate (betas 0, 0.99, as Projected GAN)
    prefix_probs: tuple = (0.2, 0.2, 0.6)    # basic / + middle / all layers
    quality_probs: tuple = ()                # weight of each quality in training (normalised); (): uniform
    widths: tuple = (32, 64, 128, 192)
    kimg: float = 1000.0                     # stop after this many thousand images
    max_minutes: float | None = None
    eval_every: int = 500
    eval_images: int = 100
    eval_quality: int = 5
    save_every: int = 250
    device: str = "auto"                     # "cpu", "cuda", "cuda:1", or "auto": cuda when available
    precision: str = "auto"                  # "bf16": autocast the networks; "fp32"; "auto": bf16 on CUDA, and on a
                                             # CPU with avx512_bf16 whichever a timed step finds faster (faster on
                                             # an AMD Zen 4, slower on an Intel Xeon: common.bf16_is_faster)
    seed: int = 0
    resume: str | None = "auto"


def quality_weights(weights: Sequence[float], num_qualities: int) -> np.ndarray | None:
    """The training distribution over qualities 0..num_qualities-1 from non-negative weights (None: uniform)."""
    if not len(weights):
        return None
    w = np.asarray(weights, np.float64)
    if w.shape != (num_qualities,) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise StylecodecError(f"--quality-probs wants {num_qualities} non-negative weights (quality 0 first), "
                              f"not {list(weights)}")
    return w / w.sum()


def _unit(u8: np.ndarray) -> torch.Tensor:
    """uint8 faces [N, P, P, 3] (read-only memory maps too) -> [N, 3, P, P] in [-1, 1]."""
    return torch.as_tensor(np.array(u8, dtype=np.float32)).permute(0, 3, 1, 2) / 127.5 - 1


def _state(model, opt, step, seen, cpu_s, cfg, disc=None, d_opt=None, ema=None) -> dict[str, Any]:
    state = {"kind": KIND, "model": model.state_dict(), "config": model.config, "opt": opt.state_dict(),
             "step": step, "seen": seen, "cpu_seconds": cpu_s, "train_config": asdict(cfg), "rng": common.rng_state()}
    if disc is not None:
        state.update(disc=disc.state_dict(), d_opt=d_opt.state_dict())
    if ema is not None:
        state["ema"] = ema.state_dict()
    return state


class WeightAverage:
    """Exponential moving average of a module's parameters (StyleGAN's G_ema): after every optimiser
    step ``avg <- avg + (1 - beta) (p - avg)``, beta = 0.5 ** (batch / (half_life_kimg * 1000)), so
    the weight of a step halves every ``half_life_kimg`` thousand images. :meth:`swapped` puts the
    average into the module for evaluation or export and the raw weights back afterwards."""

    def __init__(self, module: torch.nn.Module, half_life_kimg: float, batch: int):
        if half_life_kimg <= 0:
            raise ValueError(f"half_life_kimg must be > 0, got {half_life_kimg}")
        self.module, self.beta = module, 0.5 ** (batch / (half_life_kimg * 1000))
        self.avg = {n: p.detach().float().clone() for n, p in module.named_parameters()}

    @torch.no_grad()
    def update(self) -> None:
        for n, p in self.module.named_parameters():
            self.avg[n].lerp_(p.detach().float(), 1 - self.beta)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.avg)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.avg):
            raise StylecodecError("the checkpoint's weight average does not match the refiner's parameters")
        for n, t in state.items():
            self.avg[n].copy_(t)

    @contextlib.contextmanager
    def swapped(self):
        raw = {n: p.detach().clone() for n, p in self.module.named_parameters()}
        with torch.no_grad():
            for n, p in self.module.named_parameters():
                p.copy_(self.avg[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.module.named_parameters():
                    p.copy_(raw[n])


def _carried(record: dict) -> tuple[int, float]:
    """(images seen, CPU seconds) of a training record that a run starting from its weights carries on."""
    return int(record.get("images_seen", 0)), float(record.get("cpu_hours", 0.0)) * 3600


def _facenet_embedding(net, x: torch.Tensor) -> torch.Tensor:
    """facenet(x) [N, 512], differentiable; x [N, 3, H, W] in [-1, 1] (facenet's own standardisation)."""
    x160 = F.interpolate((x + 1) * 127.5, size=(160, 160), mode="bilinear", align_corners=False)
    return net((x160 - 127.5) / 128.0)


def _identity_cos(net, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """cos(facenet(x), target) per image; x [N, 3, H, W] in [-1, 1]."""
    return F.cosine_similarity(_facenet_embedding(net, x), target, dim=1)


def train_refiner(cfg: RefinerConfig, log=print) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(cfg.data) if cfg.data else default_data_root()
    train_names = split_files(list_images(root), "train", cfg.val_count)
    n_train = len(train_names)
    resumed = common.checkpoint_to_resume(out, cfg.resume, KIND, log)
    init_seen, init_cpu_s = 0, 0.0
    if resumed is not None:
        model = MachineFirstModel(resumed["config"])
        model.load_state_dict(resumed["model"])
    else:
        loaded = load(cfg.model)
        base = loaded.model
        if not isinstance(base, MachineFirstModel):
            raise StylecodecError(f"{cfg.model} is not a machine-first model")
        model = with_refiner(base, cfg.widths)
        if not cfg.init_refiner and base.refiner is not None:       # e.g. `default`: go on from its refiner
            if list(base.config["refiner"]["widths"]) != [int(w) for w in cfg.widths]:
                raise StylecodecError(f"{cfg.model} has a refiner of widths {base.config['refiner']['widths']}, "
                                      f"not {list(cfg.widths)}: train on the model without it (e.g. default-linear)")
            model.refiner.load_state_dict(base.refiner.state_dict())
            init_seen, init_cpu_s = _carried(loaded.meta.get("refiner", loaded.meta))   # registry file's or run's
            log(f"refiner of {cfg.model} goes on ({init_seen} images, {init_cpu_s / 3600:.2f} CPU-h carried over)")
        weights = read_refiner_weights(cfg.init_refiner) if cfg.init_refiner else None
        if weights is not None:
            init_seen, init_cpu_s = _carried(load_refiner_weights(model, cfg.init_refiner, weights))
        elif cfg.init_refiner:
            donor = load(cfg.init_refiner)
            transfer_refiner(donor.model, model)
            init_seen, init_cpu_s = _carried(donor.meta)
            log(f"refiner weights from {cfg.init_refiner} ({init_seen} images, {init_cpu_s / 3600:.2f} CPU-h "
                f"carried over: the learning curve goes on)")
    q_probs = quality_weights(cfg.quality_probs, model.num_qualities)  # a bad list fails before the caches
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("refiner."))
    P = model.pixel_resolution
    faces = pixel_array(root, "train", P, cfg.val_count)
    teachers = utkface_teachers(root)
    target_id = torch.from_numpy(teachers["facenet"][:n_train])             # [N, 2, 512]: face, mirror
    if cfg.latents and Path(cfg.latents).is_file():
        with np.load(cfg.latents) as z:
            ys = [torch.from_numpy(z[f"y{l}"]) for l in range(3)]
        check_latents(model, ys, teachers, faces, cfg.latents)
    else:
        ys = [torch.from_numpy(y) for y in training_latents(model, teachers, np.arange(n_train), faces)]
    assert ys[0].shape[0] == 2 * n_train, (ys[0].shape, n_train)
    val_full = _unit(pixel_array(root, "val", model.resolution, cfg.val_count)[:cfg.eval_images])
    val_id = torch.from_numpy(teachers["facenet"][len(teachers["files"]) - cfg.val_count:][:cfg.eval_images, 0])
    val_latents = _val_latents(model, root, cfg)
    dev = torch.device(cfg.device if cfg.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    model.to(dev)
    val_full, val_id, val_latents = val_full.to(dev), val_id.to(dev), [y.to(dev) for y in val_latents]
    lpips = load_lpips("alex", dev)
    facenet = load_facenet(dev)
    for net in (lpips, facenet):
        for p in net.parameters():
            p.requires_grad_(False)
    # channels_last: oneDNN's fast convolution layout on CPU (refiner f+b at batch 8: 3.8 s -> 1.7 s fp32)
    for net in (model.refiner, lpips, facenet):
        net.to(memory_format=torch.channels_last)
    tid_of = lambda face, mirror: target_id[torch.from_numpy(face),                           # noqa: E731
                                            torch.from_numpy(mirror.astype(np.int64))].to(dev)

    def generator_loss(x_hat: torch.Tensor, x: torch.Tensor, tid: torch.Tensor, adv: bool = True) -> torch.Tensor:
        """The refiner's loss (module docstring) of faces x_hat against x [N, 3, P, P], facenet targets tid
        (the discriminator's term only with ``adv``)."""
        loss = (x_hat - x).abs().mean() + cfg.w_lpips * lpips(x_hat, x).float().mean()
        if cfg.w_mse:
            loss = loss + cfg.w_mse * ((x_hat - x) ** 2).mean()
        if cfg.w_id:
            loss = loss + cfg.w_id * (1 - _identity_cos(facenet, x_hat, tid).float()).mean()
        if disc is not None and adv:
            disc.requires_grad_(False)
            loss = loss + cfg.w_adv * g_loss([o.float() for o in disc(x_hat)])
        return loss

    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], cfg.lr, betas=(0.9, 0.99))
    disc = d_opt = None
    if cfg.w_adv > 0:
        disc = ProjectedDiscriminator(model.pixel_resolution, seed=cfg.seed).to(dev)
        d_opt = torch.optim.Adam(disc.parameters(), cfg.d_lr, betas=(0.0, 0.99))
        if resumed is not None and "disc" in resumed:
            disc.load_state_dict(resumed["disc"])
            d_opt.load_state_dict(resumed["d_opt"])
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and dev.type == "cuda" and torch.cuda.is_bf16_supported())
    if cfg.precision == "auto" and dev.type == "cpu" and torch.cpu._is_avx512_bf16_supported():
        first = np.arange(cfg.batch)     # a fixed batch, no randomness, no discriminator: resuming stays exact
        px = _unit(np.asarray(faces[first])).to(dev)
        p_lin = model.linear_image(ys[1][first].to(dev), ys[2][first].to(dev)).contiguous(
            memory_format=torch.channels_last)
        p_ys, p_tid = [y[first].to(dev) for y in ys], tid_of(first, np.zeros(cfg.batch, bool))

        def probe(use_bf16: bool) -> None:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                generator_loss(model.refiner(p_lin, p_ys).float(), px, p_tid, adv=False).backward()
            model.refiner.zero_grad(set_to_none=True)

        bf16, s16, s32 = common.bf16_is_faster(probe)
        log(f"precision auto: a step's forward + backward takes {s16:.2f} s in bf16, {s32:.2f} s in fp32 on this "
            f"CPU -> {'bf16' if bf16 else 'fp32'}")
    ema = WeightAverage(model.refiner, cfg.ema_kimg, cfg.batch) if cfg.ema_kimg > 0 else None
    step, seen, cpu_s = 0, 0, 0.0
    if resumed is not None:
        opt.load_state_dict(resumed["opt"])
        if ema is not None and "ema" in resumed:     # else the average starts from the resumed weights
            ema.load_state_dict(resumed["ema"])
        step, seen, cpu_s = resumed["step"], resumed["seen"], resumed["cpu_seconds"]
        common.set_rng_state(resumed["rng"])
    else:
        common.seed_everything(cfg.seed)
        step, seen, cpu_s = init_seen // cfg.batch, init_seen, init_cpu_s
    write_bytes(out / "config.json", json.dumps({"train": asdict(cfg), "model": model.config}, indent=1).encode())
    coder = model.coder
    metrics = out / "metrics.csv"
    header = b"step,images_seen,cpu_hours,psnr,lpips_alex,facenet_cos,psnr_linear,lpips_linear\n"
    for path in (metrics, out / "metrics_raw.csv") if ema is not None else (metrics,):
        if not path.is_file():
            write_bytes(path, header)

    def evaluate(cpu_now: float) -> None:
        """Score (and save) the weight average when there is one; then the raw weights too
        (``metrics_raw.csv``: what the average adds)."""
        if ema is None:
            return _evaluate(cpu_now, metrics, save=True)
        with ema.swapped():
            _evaluate(cpu_now, metrics, save=True)
        _evaluate(cpu_now, out / "metrics_raw.csv", save=False, what="raw weights")

    @torch.no_grad()
    def _evaluate(cpu_now: float, csv_path: Path, save: bool, what: str = "") -> None:
        model.eval()
        rows = score_faces(model, val_latents, cfg.eval_quality, val_full, val_id, lpips, facenet)
        model.train()
        line = (f"{step},{seen},{cpu_now / 3600:.4f},{rows[0][0]:.3f},{rows[0][1]:.4f},{rows[0][2]:.4f},"
                f"{rows[1][0]:.3f},{rows[1][1]:.4f}\n")
        with open(csv_path, "a") as f:
            f.write(line)
        log(f"step {step} ({seen} images, {cpu_now / 3600:.2f} CPU-h){' ' + what if what else ''}: PSNR "
            f"{rows[0][0]:.2f} dB, LPIPS-Alex {rows[0][1]:.3f}, facenet {rows[0][2]:.3f} | eigenfaces "
            f"{rows[1][0]:.2f} dB, {rows[1][1]:.3f}")
        if save:
            save_model(model, out / "model.pt", {"trainer": "refiner", "images_seen": seen, "steps": step,
                                                 "cpu_hours": round(cpu_now / 3600, 3), "base": str(cfg.model),
                                                 "ema_kimg": cfg.ema_kimg}, storage="fp16")

    info = common.DistInfo()
    total = int(cfg.kimg * 1000 / cfg.batch)
    cpu0, t0 = time.process_time(), time.perf_counter()
    rng = np.random.default_rng(cfg.seed + step)
    model.train()
    with common.StopSignal() as stop:
        bar = common.progress(total, step, info, "train refiner", unit="step")
        while step < total:
            idx = rng.choice(2 * n_train, cfg.batch, replace=False)
            face, mirror = idx % n_train, idx >= n_train
            order = np.argsort(face)                 # memory-mapped reads in file order
            idx, face, mirror = idx[order], face[order], mirror[order]
            x = _unit(np.asarray(faces[face])).to(dev)
            x = torch.where(torch.from_numpy(mirror).to(dev)[:, None, None, None], x.flip(3), x)
            batch_ys = [y[torch.from_numpy(idx)].to(dev) for y in ys]
            q = torch.from_numpy(rng.choice(model.num_qualities, cfg.batch, p=q_probs) if q_probs is not None
                                 else rng.integers(0, model.num_qualities, cfg.batch)).to(dev)
            k = int(rng.choice(3, p=cfg.prefix_probs)) + 1
            with torch.no_grad():
                g, gi = model.gains(q, cfg.batch)
                coded = coder(batch_ys, g, "mixed")
                y_hat = [y_c * gi[:, model.layer_slice(l)] for l, y_c in enumerate(coded["y_hat"])]
                if k < 3:
                    y_hat = y_hat[:k] + coder.complete(coded["context"][:k])[k:]
                x_lin = model.linear_image(y_hat[1], y_hat[2])
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                x_hat = model.refiner(x_lin.contiguous(memory_format=torch.channels_last), y_hat).float()
                loss = generator_loss(x_hat, x, tid_of(face, mirror))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update()
            if disc is not None:                         # the discriminator's step on the same faces
                disc.requires_grad_(True)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    ld = d_loss([o.float() for o in disc(x)], [o.float() for o in disc(x_hat.detach())])
                d_opt.zero_grad(set_to_none=True)
                ld.backward()
                d_opt.step()
            step += 1
            seen += cfg.batch
            bar.update(1)
            bar.set_postfix_str(f"loss {loss.item():.3f}")
            cpu_now = cpu_s + time.process_time() - cpu0
            if step % cfg.save_every == 0:
                common.save_checkpoint(out, step, _state(model, opt, step, seen, cpu_now, cfg, disc, d_opt, ema))
            if step % cfg.eval_every == 0:
                evaluate(cpu_now)
            halt = stop.check(time.perf_counter() - t0, cfg.max_minutes)
            if halt is not None:
                common.save_checkpoint(out, step, _state(model, opt, step, seen, cpu_now, cfg, disc, d_opt, ema))
                log(f"stopped at step {step} ({halt[1]}); resume with --resume auto")
                bar.close()
                raise SystemExit(halt[0])
        bar.close()
    evaluate(cpu_s + time.process_time() - cpu0)
    return out / "model.pt"


@torch.no_grad()
def _val_latents(model: MachineFirstModel, root: Path, cfg: RefinerConfig) -> list[torch.Tensor]:
    """Latents of the first eval_images held-out faces (cached teacher outputs + their pixels)."""
    t = utkface_teachers(root)
    rows = np.arange(len(t["files"]) - cfg.val_count, len(t["files"]) - cfg.val_count + cfg.eval_images)
    pixels = pixel_array(root, "val", model.pixel_resolution, cfg.val_count)[:cfg.eval_images]
    return face_latents(model, t, rows, pixels)


@torch.no_grad()
def face_latents(model: MachineFirstModel, teachers: dict, rows: np.ndarray, pixels: np.ndarray) -> list[torch.Tensor]:
    """Latents [y0, y1, y2] of faces as the encoder makes them: the basic layer from the cached teacher outputs
    (``teachers`` rows ``rows``: flip-averaged identity, landmarks), the others from their pixels (uint8
    [N, P, P, 3] at the model's pixel resolution)."""
    from ..analysis.face_teachers import flip_identity

    y0 = model.basic_latent(torch.from_numpy(flip_identity(teachers)[rows]),
                            torch.from_numpy(teachers["landmarks"][rows]))
    return [y0] + model.pixel_latents(_unit(pixels))


@torch.no_grad()
def score_faces(model: MachineFirstModel, ys: list[torch.Tensor], quality: int, full: torch.Tensor,
                target_id: torch.Tensor, lpips, facenet) -> list[tuple[float, float, float]]:
    """The trainer's scoring: faces of latents ``ys`` coded at ``quality`` (ŷ rounded around the LSET
    means), decoded from all layers at the model's resolution as uint8, against ``full`` [N, 3, R, R] in
    [-1, 1]. Returns the batch means (PSNR dB, LPIPS-Alex, facenet cosine to ``target_id`` [N, 512]) of
    the refined face and of the eigenface image (bicubic to R), in that order."""
    q = torch.full((full.shape[0],), quality, device=full.device)
    res = model(ys, q, quant="ste")
    lin = model.linear_image(res["y_hat"][1], res["y_hat"][2])
    rows = []
    for img in (model.render(res["y_hat"]), F.interpolate(lin, size=model.resolution, mode="bicubic",
                                                         align_corners=False).clamp(-1, 1)):
        u8 = ((img + 1) * 127.5).round()
        ref = (full + 1) * 127.5
        mse = ((u8 - ref) ** 2).mean((1, 2, 3))
        rows.append(((10 * torch.log10(255 ** 2 / mse)).mean().item(),
                     lpips(u8 / 127.5 - 1, full).mean().item(),
                     _identity_cos(facenet, u8 / 127.5 - 1, target_id).mean().item()))
    return rows


@torch.no_grad()
def pca_signs(a: MachineFirstModel, b: MachineFirstModel, min_cos: float = 0.99) -> torch.Tensor:
    """[d_total] ±1: whether each whitened latent of ``b`` (identity, shape, eigenface components, in
    latent order) is ``a``'s or its negative. StylecodecError unless the two models' PCA fits agree
    up to sign (|cos| >= ``min_cos`` for every component)."""
    if a.latent_dims != b.latent_dims or a.pixel_resolution != b.pixel_resolution:
        raise StylecodecError(f"latents {a.latent_dims} @ {a.pixel_resolution}² do not match "
                              f"{b.latent_dims} @ {b.pixel_resolution}²")
    signs = []
    for name in ("id_basis", "shape_basis", "pix_basis"):
        u, v = getattr(a, name).double(), getattr(b, name).double()
        cos = (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1)).clamp_min(1e-12)
        if (cos.abs() < min_cos).any():
            raise StylecodecError(f"{name}: {(cos.abs() < min_cos).sum().item()} components differ beyond sign "
                                  f"(min |cos| {cos.abs().min().item():.3f}): another PCA, not transferable")
        signs.append(torch.sign(cos))
    return torch.cat(signs).float()


@torch.no_grad()
def transfer_refiner(donor: MachineFirstModel, model: MachineFirstModel, min_cos: float = 0.99) -> torch.Tensor:
    """Copy ``donor``'s refiner into ``model`` (same widths and latent sizes), re-expressed in
    ``model``'s latent coordinates: two PCA fits of the same data may return a component with the
    opposite sign (mf0 and the shipped default differ in 85 of their 192 eigenfaces), which flips
    that whitened latent. The style MLP's input columns of flipped components are negated, so the
    refiner computes the same function of the face. Raises if a component is not the same up to
    sign (|cos| < ``min_cos``: a different PCA, not transferable). Returns the signs [d_total]."""
    if getattr(donor, "refiner", None) is None:
        raise StylecodecError("the donor model has no refiner to start from")
    signs = pca_signs(donor, model, min_cos)
    state = donor.refiner.state_dict()
    first = "style.0.weight"
    assert state[first].shape[1] == signs.numel(), (state[first].shape, signs.numel())
    state[first] = state[first] * signs.to(state[first].dtype)[None, :]
    model.refiner.load_state_dict(state)
    return signs
