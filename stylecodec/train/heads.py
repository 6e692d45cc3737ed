"""Training of the analysis heads (:mod:`stylecodec.analysis.heads`) on a FROZEN codec.

Data: UTKFace train split (files sorted by name minus the last ``val_count``; ``limit`` keeps
the first N of them); the held-out split only scores (``val_images`` of it), never trains.

1. Teacher labels (dlib 68 points, facenet embeddings) from :mod:`stylecodec.analysis.teacher`
   (cached across runs).
2. The codec's encoder + analysis transform give the basic latent y_0 [N, d_0] of every face
   once (cached in ``RUN_DIR/latents-<fingerprint>-<key>.npz``; y_0 does not depend on the
   quality).
3. Each step: a batch, a random quality per sample, ŷ_basic (and the LSET predictions of the
   higher layers for ``inputs="basic+pred"``) by exact emulation of the coder
   (:func:`decoded_inputs`), the heads, and the loss
   ``w_landmarks · NME(landmarks, dlib) + w_identity · (1 − cos(identity, facenet))``
   (NME: mean point distance / the teacher's outer-eye-corner distance, on faces where dlib
   found the face).

Outputs in ``RUN_DIR``: ``ckpt-<step>.pt`` (resumable, ``--resume auto``), ``config.json``,
TensorBoard ``tb/`` (step axis: training samples seen), and ``model.pt``: the codec checkpoint
with the heads added under ``ck["heads"]`` (codec weights and fingerprint unchanged).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis.heads import AnalysisHeads, INPUTS
from ..analysis.teacher import cache_key, chunked_npz, teacher_labels
from ..data import default_data_root, list_images, split_files, to_tensor
from ..errors import StylecodecError
from ..images import load_rgb
from ..metrics.nme import landmark_nme
from ..zoo import LoadedModel, load, save_heads_into
from . import common

__all__ = ["HeadsConfig", "DEFAULTS", "RUN_CONTROL", "resolve_config", "HeadsTrainer",
           "encode_latents", "train_heads"]

DEFAULTS: dict[str, Any] = dict(
    model="default", data=None, steps=20000, batch=256, lr=1e-3, weight_decay=1e-4, warmup=500,
    w_landmarks=1.0, w_identity=1.0, inputs="basic", hidden=512, depth=3, dropout=0.0, limit=None,
    val_count=1000, val_images=200, seed=0, device="auto", log_every=100, val_every=1000, ckpt_every=1000,
    keep=2, teacher_cache=None, teacher_workers=1, encode_batch=64, max_minutes=None)

# options that may change when a run resumes; the rest must match the checkpoint
RUN_CONTROL = {"out", "steps", "device", "log_every", "val_every", "ckpt_every", "keep", "max_minutes",
               "teacher_cache", "teacher_workers", "encode_batch", "model"}


@dataclass
class HeadsConfig:
    """Everything a heads run needs; stored in each checkpoint and in RUN_DIR/config.json."""
    out: str
    model: str
    data: str
    steps: int
    batch: int
    lr: float
    weight_decay: float
    warmup: int
    w_landmarks: float
    w_identity: float
    inputs: str
    hidden: int
    depth: int
    dropout: float
    limit: int | None
    val_count: int
    val_images: int
    seed: int
    device: str
    log_every: int
    val_every: int
    ckpt_every: int
    keep: int
    teacher_cache: str | None
    teacher_workers: int
    encode_batch: int
    max_minutes: float | None

    def validate(self) -> None:
        if self.inputs not in INPUTS:
            raise StylecodecError(f"--inputs must be one of {', '.join(INPUTS)}, not {self.inputs!r}")
        for name in ("steps", "batch", "log_every", "val_every", "ckpt_every", "encode_batch", "hidden"):
            if getattr(self, name) < 1:
                raise StylecodecError(f"--{name.replace('_', '-')} must be at least 1")
        if self.limit is not None and self.limit < 2:
            raise StylecodecError("--limit must be at least 2")


def resolve_config(given: dict[str, Any], checkpoint_config: dict[str, Any] | None = None) -> HeadsConfig:
    """Defaults < ``given`` (None = not given); when resuming, the checkpoint's config replaces the
    defaults and a given option outside :data:`RUN_CONTROL` must match it."""
    given = {k: v for k, v in given.items() if v is not None}
    if checkpoint_config is not None:
        cfg = common.merge_resumed_config(checkpoint_config, given, RUN_CONTROL)
    else:
        cfg = {**DEFAULTS, **given}
        cfg["data"] = cfg["data"] or str(default_data_root())
    known = {f.name for f in fields(HeadsConfig)}
    config = HeadsConfig(**{k: v for k, v in cfg.items() if k in known})
    config.validate()
    return config


@torch.no_grad()
def decoded_inputs(model, y_basic: torch.Tensor, quality, with_pred: bool = False) -> list[torch.Tensor]:
    """What a decoder of the basic layer gets, emulated on a batch (float32, model's device):
    [ŷ_basic [N, d_0]] (+ LSET-predicted means of the higher layers when ``with_pred``).

    y_basic: unscaled basic latents y_0 [N, d_0]; quality: int or int64 [N]. The group coder's
    "ste" quantiser rounds group by group around the snapped LSET mean like the coder, so this
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


@torch.no_grad()
def encode_latents(loaded: LoadedModel, root: Path, files: list[str], path: Path, batch: int,
                   progress: bool = True) -> np.ndarray:
    """Basic latents y_0 [N, d_0] float32 of ``files`` (loaded as the codec trains on them), cached."""
    model = loaded.model
    dev, res = model.gain.device, model.resolution

    def compute(start: int, stop: int) -> dict:
        out = []
        for i in range(start, stop, batch):
            x = torch.stack([to_tensor(load_rgb(root / f, res)) for f in files[i:min(i + batch, stop)]]).to(dev)
            out.append(model.transforms.analyse(model.E(x))[0].float().cpu().numpy())
        return {"y": np.concatenate(out)}

    meta = {"files": np.array(files), "fingerprint": np.array(int(loaded.fingerprint))}
    return chunked_npz(path, len(files), compute, chunk=max(batch, 512), desc="basic latents",
                       progress=progress, meta=meta)["y"]


class HeadsTrainer:
    """The heads, their optimiser and the loop over cached latents + teacher labels."""

    def __init__(self, cfg: HeadsConfig, loaded: LoadedModel, data: dict[str, torch.Tensor], info: common.DistInfo,
                 checkpoint: dict[str, Any] | None = None):
        self.cfg, self.loaded, self.data, self.info, self.dev = cfg, loaded, data, info, info.device
        self.model = model = loaded.model
        self.out = Path(cfg.out)
        dims = list(model.latent_dims)
        pred_dim = sum(dims[1:]) if cfg.inputs == "basic+pred" else 0
        torch.manual_seed(cfg.seed)
        self.heads = AnalysisHeads(dims[0], pred_dim, cfg.hidden, cfg.depth, 512, cfg.dropout).to(self.dev)
        self.opt = torch.optim.AdamW(self.heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step, self.wall_time = 0, 0.0
        if checkpoint is not None:
            if checkpoint["codec_fingerprint"] != loaded.fingerprint:
                raise StylecodecError(f"the run was trained on codec 0x{checkpoint['codec_fingerprint']:04x}, "
                                      f"--model is 0x{loaded.fingerprint:04x}")
            self.heads.load_state_dict(checkpoint["heads"])
            self.opt.load_state_dict(checkpoint["optimiser"])
            self.step, self.wall_time = checkpoint["step"], checkpoint["wall_time"]
            common.restore_rng(checkpoint["rng"], cfg.seed, info, self.step)
        else:
            common.seed_everything(cfg.seed)
            self._init_buffers()

    def features(self, y0: torch.Tensor, quality) -> torch.Tensor:
        return self.heads.features(decoded_inputs(self.model, y0, quality, self.cfg.inputs == "basic+pred"))

    @torch.no_grad()
    def _init_buffers(self) -> None:
        """Input standardisation from the train latents (random qualities); mean landmark shape."""
        y, q_count = self.data["y"], self.model.num_qualities
        feats = torch.cat([self.features(y[i:i + 4096], torch.randint(q_count, (len(y[i:i + 4096]),)))
                           for i in range(0, len(y), 4096)])
        self.heads.set_input_stats(feats)
        found = self.data["found"]
        lm = self.data["landmarks"][found] if found.any() else self.data["landmarks"]
        self.heads.mean_shape.copy_(lm.mean(0))

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 1 % of ``lr``."""
        cfg = self.cfg
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))

    def losses(self, out: dict, idx: torch.Tensor, split: str = "") -> dict[str, torch.Tensor]:
        d = self.data
        lm = landmark_nme(out["landmarks"], d[split + "landmarks"][idx], d[split + "found"][idx])
        cos = (out["identity"] * d[split + "identity"][idx]).sum(1).mean()
        return {"nme": lm, "cos": cos, "loss": self.cfg.w_landmarks * lm + self.cfg.w_identity * (1 - cos)}

    def train_step(self) -> dict[str, float]:
        n, cfg = len(self.data["y"]), self.cfg
        idx = torch.randint(n, (min(cfg.batch, n),), device=self.dev)
        q = torch.randint(self.model.num_qualities, (len(idx),), device=self.dev)
        self.heads.train()
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        out = self.heads(self.features(self.data["y"][idx], q))
        parts = self.losses(out, idx)
        self.opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.opt.step()
        self.step += 1
        return {f"Loss/{k}": float(v.detach()) for k, v in parts.items()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out NME and cosine at every quality (and the mean-shape NME for reference)."""
        if "val_y" not in self.data:
            return {}
        self.heads.eval()
        idx = torch.arange(len(self.data["val_y"]), device=self.dev)
        stats, nmes, coss = {}, [], []
        for q in range(self.model.num_qualities):
            out = self.heads(self.features(self.data["val_y"], q))
            p = self.losses(out, idx, "val_")
            nmes.append(float(p["nme"]))
            coss.append(float(p["cos"]))
            stats[f"Val/nme_q{q}"], stats[f"Val/cos_q{q}"] = nmes[-1], coss[-1]
        mean_shape = self.heads.mean_shape.expand(len(idx), -1, -1)
        stats.update({"Val/nme": float(np.mean(nmes)), "Val/cos": float(np.mean(coss)),
                      "Val/nme_mean_shape": float(landmark_nme(mean_shape, self.data["val_landmarks"],
                                                               self.data["val_found"]))})
        return stats

    def state_dict(self, stats: dict[str, float]) -> dict[str, Any]:
        return {"kind": "stylecodec.heads", "step": self.step, "wall_time": self.wall_time,
                "heads": self.heads.state_dict(), "heads_config": dict(self.heads.config),
                "optimiser": self.opt.state_dict(), "rng": common.rng_state(), "config": asdict(self.cfg),
                "codec_fingerprint": int(self.loaded.fingerprint), "stats": stats}

    def export(self, stats: dict[str, float]) -> Path:
        """RUN_DIR/model.pt: the codec checkpoint + these heads."""
        path = self.out / "model.pt"
        meta = {"steps": self.step, "samples": self.step * self.cfg.batch, "inputs": self.cfg.inputs,
                "data": self.cfg.data, "train_images": len(self.data["y"]), "val": stats,
                "trained": time.strftime("%Y-%m-%d %H:%M:%S")}
        save_heads_into(self.loaded.source, self.heads.cpu(), path, meta)
        self.heads.to(self.dev)
        return path

    def run(self) -> int:
        """Train to ``cfg.steps`` (or ``max_minutes``, or a signal); returns an exit status."""
        cfg = self.cfg
        log = common.RunLogger(self.out, self.info)
        timer, session = common.Timer(self.wall_time), common.Timer()
        bar = common.progress(cfg.steps, min(self.step, cfg.steps), self.info, "heads", unit="step")
        acc: dict[str, list] = {}
        last: dict[str, float] = {}
        status, reason, saved = 0, "done", self.step
        log.print(f"[heads] {'resuming at step ' + str(self.step) if self.step else 'start'}: "
                  f"{len(self.data['y'])} train faces, inputs {cfg.inputs}, device {self.dev}, {cfg.steps} steps")
        try:
            with common.StopSignal() as stop:
                while self.step < cfg.steps:
                    halt = stop.check(session(), cfg.max_minutes, self.info)
                    if halt is not None:
                        status, reason = halt
                        break
                    for k, v in self.train_step().items():
                        a = acc.setdefault(k, [0.0, 0])
                        a[0], a[1] = a[0] + v, a[1] + 1
                    self.wall_time = timer()
                    bar.update(1)
                    end = self.step >= cfg.steps
                    if self.step % cfg.log_every == 0 or end:
                        stats = {k: s / c for k, (s, c) in acc.items()}
                        stats["Progress/lr"] = self.lr_at(self.step - 1)
                        if not all(math.isfinite(v) for v in stats.values()):
                            raise StylecodecError(f"training diverged at step {self.step}: {stats}")
                        log.scalars(stats, self.step * cfg.batch)
                        bar.set_postfix({"nme": f"{stats['Loss/nme']:.4f}", "cos": f"{stats['Loss/cos']:.3f}"},
                                        refresh=False)
                        acc = {}
                    if self.step % cfg.val_every == 0 or end:
                        last = self.evaluate()
                        log.scalars(last, self.step * cfg.batch)
                        if last:
                            log.print(f"[heads] step {self.step}: held-out NME {last['Val/nme']:.4f} "
                                      f"(mean shape {last['Val/nme_mean_shape']:.4f}), cosine {last['Val/cos']:.3f}")
                    if self.step % cfg.ckpt_every == 0:
                        common.save_checkpoint(self.out, self.step, self.state_dict(last), cfg.keep)
                        saved = self.step
            if saved != self.step:
                common.save_checkpoint(self.out, self.step, self.state_dict(last), cfg.keep)
            if status == 0:
                log.print(f"[heads] {reason} at step {self.step}; codec + heads written to {self.export(last)}")
            else:
                log.print(f"[heads] stopped by {reason} at step {self.step}; continue with --resume auto")
        finally:
            bar.close()
            log.close()
        return status


def _load_data(cfg: HeadsConfig, loaded: LoadedModel, dev: torch.device,
               progress: bool = True) -> dict[str, torch.Tensor]:
    """Cached latents + teacher labels of the train files (and the scored held-out files), as tensors."""
    root = Path(cfg.data)
    names = list_images(root)
    sets = {"": split_files(names, "train", cfg.val_count)[:cfg.limit]}
    if cfg.val_images > 0 and cfg.val_count > 0:
        sets["val_"] = split_files(names, "val", cfg.val_count)[:cfg.val_images]
    data: dict[str, torch.Tensor] = {}
    teacher_dev = "cuda" if dev.type == "cuda" else "cpu"
    res, fp = loaded.model.resolution, loaded.fingerprint
    for prefix, files in sets.items():
        labels = teacher_labels(root, files, res, cfg.teacher_cache, device=teacher_dev,
                                progress=progress, workers=cfg.teacher_workers)
        key = cache_key(root, res, files)
        y = encode_latents(loaded, root, files, Path(cfg.out) / f"latents-{fp:04x}-{key}.npz",
                           cfg.encode_batch, progress)
        data[prefix + "y"] = torch.from_numpy(y).to(dev)
        for k in ("landmarks", "found", "identity"):
            data[prefix + k] = torch.from_numpy(labels[k]).to(dev)
    return data


def train_heads(given: dict[str, Any], resume: str | None = None) -> int:
    """Load the frozen codec, the data, and train (CLI-style options; None = default). Exit status.

    ``resume``: None (refuse a RUN_DIR holding checkpoints), 'auto' (newest checkpoint or a
    fresh start) or a checkpoint path.
    """
    if not given.get("out"):
        raise StylecodecError("--out RUN_DIR is required")
    out = Path(given["out"])
    ckpt = common.checkpoint_to_resume(out, resume, "stylecodec.heads")
    cfg = resolve_config(given, ckpt["config"] if ckpt else None)
    info = common.DistInfo(device=common.select_device(cfg.device))
    loaded = load(cfg.model, info.device)
    loaded.model.requires_grad_(False).eval()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    data = _load_data(cfg, loaded, info.device)
    return HeadsTrainer(cfg, loaded, data, info, ckpt).run()
