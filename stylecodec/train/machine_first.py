"""``stylecodec train machine-first``: fit and train a :class:`~stylecodec.machine_first.MachineFirstModel`.

Everything the encoder side computes is frozen, so the whole model trains on cached vectors:

1. Teacher outputs of every UTKFace face (SFace of face + mirror, dlib's 68 points;
   :func:`stylecodec.analysis.face_teachers.utkface_teachers`, cached across runs) and the faces
   at P x P (:func:`stylecodec.data.pixel_array`). Training uses the train split only (the last
   ``val_count`` files by name are held out and only scored); LFW is never used.
2. PCA models: identity (flip-averaged SFace), shape (dlib points, faces where dlib found the
   face, + mirrors), eigenfaces (``pca_fit`` training faces at P x P).
3. Latents of every training face and its mirror (cached in ``RUN_DIR/latents.npz``).
4. Gains from the quality table :data:`QUALITY_TABLE` (per quality: how many components of each
   part are coded, and their quantiser step), ``inv_gain = 1 / gain``.
5. The LSET learns p(ŷ) (noise quantisation, a random quality per sample, loss = bits).

Writes ``RUN_DIR/ckpt-<step>.pt`` (resumable: ``--resume auto``), ``config.json``, TensorBoard
``tb/`` and ``model.pt`` (:func:`stylecodec.zoo.save_model`) with ``rate_budget`` set.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis.face_teachers import flip_identity, utkface_teachers
from ..data import default_data_root, list_images, pixel_array, split_files
from ..encoder.face_features import mirror_landmarks
from ..errors import StylecodecError
from ..files import write_bytes, write_npz
from ..machine_first import MachineFirstModel, quality_gains
from ..zoo import save_model
from . import common

KIND = "stylecodec.machine-first"

__all__ = ["MachineFirstConfig", "QUALITY_TABLE", "train_machine_first", "fit_model", "training_latents",
           "check_latents"]

# Per quality q: identity (components, step in SFace units), shape (components, step in normalised
# coordinates), eigenfaces (middle components, enhanced components, step in coefficient units).
# Chosen with experiments/tune_quality_table.py (emulated coding of LFW and held-out UTKFace on the trained
# LSET; "mf1" there is the first table): a finer identity step with fewer components beats more
# components at a coarser step at equal bytes; 12 shape components at every quality a face may
# fall back to keep NME <= 0.020 at the default setting; quality 0 is
# identity only (LFW >= 96 % at <= 12 B). Qualities 5-7 spend the ~6 B that consistent eigenface signs
# saved, and the room under the 81 B file limit, on eigenfaces ("mf3c" there; "mf2" is the table before,
# at 65.9 B per held-out file): with the real coder LFW 98.43 % at the default (mf2 98.37 %), file 73.2 B;
# held-out eigenface PSNR +0.5 dB. "mf3b" (finer steps at 5-7) pushed LFW faces to lower qualities under
# the file limit (98.20 %, below the teacher - 1.0 bar).
# The LSET does not depend on the table (gains only scale the coding domain), so a table can be
# changed on a trained model.
QUALITY_TABLE: list[dict[str, list]] = [
    {"id": [32, 0.13], "shape": [0, 1.0], "pix": [32, 0, 6.0]},
    {"id": [40, 0.12], "shape": [8, 0.06], "pix": [48, 16, 5.0]},
    {"id": [48, 0.12], "shape": [12, 0.05], "pix": [64, 32, 4.5]},
    {"id": [48, 0.1], "shape": [12, 0.05], "pix": [64, 64, 4.0]},
    {"id": [56, 0.12], "shape": [12, 0.05], "pix": [64, 96, 3.6]},
    {"id": [56, 0.11], "shape": [12, 0.05], "pix": [64, 112, 3.4]},
    {"id": [64, 0.12], "shape": [12, 0.05], "pix": [64, 128, 3.0]},
    {"id": [64, 0.11], "shape": [12, 0.045], "pix": [64, 128, 2.4]},
]
_STATIC_RAW_FOR_UNIT_SCALE = (0.89 ** 2 - 1.0) / 0.89   # squareplus(r) = 0.89: scale 0.11 + 0.89 = 1


@dataclass
class MachineFirstConfig:
    out: str                                  # run folder
    data: str = ""                            # UTKFace folder (default: ../shared/data/utkface)
    val_count: int = 1000                     # last N files by name are held out
    pca_fit: int = 6000                       # training faces for the eigenface PCA
    steps: int = 6000                         # LSET optimiser steps
    batch: int = 256
    lr: float = 1e-3
    seed: int = 0
    max_minutes: float | None = None
    resume: str | None = "auto"
    bpp: float = 0.01                         # the model's rate budget (whole file) ...
    basic_bpp: float = 0.003                  # ... and the basic layer alone
    log_every: int = 200
    save_every: int = 1000


@torch.no_grad()
def _pca(x: np.ndarray, k: int, lowrank: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], basis [k, D] orthonormal rows) of rows x [N, D], float64 unless lowrank. Signs are
    fixed (each row's largest-magnitude entry positive): an SVD's signs are arbitrary, and the
    randomised one's change from run to run, which would flip whitened latents between fits."""
    mean = x.mean(0)
    if lowrank:
        _, _, v = torch.svd_lowrank(torch.from_numpy(x - mean), q=k + 32, niter=4)
        basis = v.T[:k].numpy()
    else:
        basis = np.linalg.svd(x - mean, full_matrices=False)[2][:k]
    pivot = np.abs(basis).argmax(1)
    return mean, basis * np.sign(basis[np.arange(len(basis)), pivot])[:, None]


def _project(x: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return (x - mean) @ basis.T


def _pixels_unit(u8: np.ndarray) -> np.ndarray:
    """uint8 [N, P, P, 3] -> float32 [N, 3·P·P] in [-1, 1], channel-first order."""
    return (np.ascontiguousarray(u8.transpose(0, 3, 1, 2)).reshape(len(u8), -1).astype(np.float32) / 127.5 - 1.0)


def fit_model(model: MachineFirstModel, teachers: dict, train_idx: np.ndarray, faces: np.ndarray,
              pca_fit: int, log=print) -> None:
    """Fit the three PCA models of ``model`` (identity, shape, eigenfaces) on the training faces."""
    ident = flip_identity(teachers)[train_idx].astype(np.float64)
    mean, basis = _pca(ident, model.id_dims)
    model.set_pca("id", mean, basis, _project(ident, mean, basis).std(0))
    found = teachers["found"][train_idx]
    lm = teachers["landmarks"][train_idx][found].astype(np.float64)
    lm = np.concatenate([lm, mirror_landmarks(lm)]).reshape(-1, 136)
    mean, basis = _pca(lm, model.shape_dims)
    model.set_pca("shape", mean, basis, _project(lm, mean, basis).std(0))
    t0 = time.time()
    x = _pixels_unit(np.asarray(faces[:pca_fit]))
    k = model.latent_dims[1] + model.latent_dims[2]
    mean, basis = _pca(x, k, lowrank=True)
    model.set_pca("pix", mean, basis, _project(x, mean, basis).std(0))
    log(f"PCA: identity {model.id_dims} of 128 (from {len(ident)} faces), shape {model.shape_dims} of 136 "
        f"({len(lm)} with mirrors), eigenfaces {k} at {model.pixel_resolution}² ({len(x)} faces, {time.time() - t0:.0f} s)")


@torch.no_grad()
def training_latents(model: MachineFirstModel, teachers: dict, train_idx: np.ndarray, faces: np.ndarray,
                     chunk: int = 1024) -> list[np.ndarray]:
    """Whitened latents [2N, d_l] of every training face and of its mirror image (rows i and N + i)."""
    ident = torch.from_numpy(flip_identity(teachers)[train_idx])
    lm = teachers["landmarks"][train_idx]
    y0 = torch.cat([model.basic_latent(ident, torch.from_numpy(lm)),
                    model.basic_latent(ident, torch.from_numpy(mirror_landmarks(lm)))]).numpy()
    pix = []
    for flip in (False, True):
        for s in range(0, len(faces), chunk):
            u8 = np.asarray(faces[s:s + chunk])
            x = torch.from_numpy(_pixels_unit(u8[:, :, ::-1] if flip else u8))
            pix.append(torch.cat(model.pixel_latents(x.view(len(u8), 3, *u8.shape[1:3])), 1).numpy())
    pix = np.concatenate(pix)
    m = model.latent_dims[1]
    return [y0.astype(np.float32), pix[:, :m].astype(np.float32), pix[:, m:].astype(np.float32)]


def check_latents(model: MachineFirstModel, ys, teachers: dict, faces: np.ndarray, path, rows: int = 4) -> None:
    """Raise unless cached latents ``ys`` ([2N, d_l] per layer, from ``path``) are ``model``'s: the
    first ``rows`` faces and their mirrors are recomputed. Latents of another fit of the PCA models
    (components with other signs) would train the LSET or a refiner on inputs the model never makes."""
    idx = np.arange(rows)
    fresh = training_latents(model, teachers, idx, np.asarray(faces[:rows]))
    n = len(ys[0]) // 2
    for layer, (y, f) in enumerate(zip(ys, fresh)):
        cached = np.concatenate([np.asarray(y[:rows]), np.asarray(y[n:n + rows])])
        if not np.allclose(cached, f, atol=2e-3):
            bad = np.abs(cached - f).max(0) > 2e-3
            raise StylecodecError(f"{path}: layer {layer} latents are not this model's ({int(bad.sum())} of "
                                  f"{len(bad)} components differ, e.g. another PCA fit); delete the file or "
                                  f"pass the run's own latents")


def _state(model, opt, step, seen, cpu_s, cfg) -> dict[str, Any]:
    return {"kind": KIND, "model": model.state_dict(), "config": model.config, "opt": opt.state_dict(), "step": step,
            "seen": seen, "cpu_seconds": cpu_s, "train_config": asdict(cfg), "rng": common.rng_state()}


def train_machine_first(cfg: MachineFirstConfig, log=print) -> Path:
    """Fit + train (resumable); returns the path of ``RUN_DIR/model.pt``."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(cfg.data) if cfg.data else default_data_root()
    names = list_images(root)
    train_names = split_files(names, "train", cfg.val_count)
    train_idx = np.arange(len(train_names))          # names are sorted: the train split is a prefix
    teachers = utkface_teachers(root)
    if list(teachers["files"][:len(train_names)]) != train_names:
        raise StylecodecError("teacher cache does not list the training files in order; delete it and rerun")
    faces = pixel_array(root, "train", MachineFirstModel().pixel_resolution, cfg.val_count)
    common.seed_everything(cfg.seed)
    resumed = common.checkpoint_to_resume(out, cfg.resume, KIND, log)
    if resumed is not None:
        model = MachineFirstModel(resumed["config"])
        model.load_state_dict(resumed["model"])
    else:
        model = MachineFirstModel({"rate_budget": {"bpp": cfg.bpp, "basic_bpp": cfg.basic_bpp}})
        fit_model(model, teachers, train_idx, faces, cfg.pca_fit, log)
        with torch.no_grad():
            g = quality_gains(model, QUALITY_TABLE)
            model.gain.copy_(g)
            model.inv_gain.copy_(1.0 / g)
            model.lset.static_raw[:, model.lset.group_size:] = _STATIC_RAW_FOR_UNIT_SCALE
    model.gain.requires_grad_(False)
    model.inv_gain.requires_grad_(False)
    lat_path = out / "latents.npz"
    if lat_path.is_file():
        with np.load(lat_path) as z:
            ys = [z[f"y{l}"] for l in range(3)]
        check_latents(model, ys, teachers, faces, lat_path)
    else:
        ys = training_latents(model, teachers, train_idx, faces)
        write_npz(lat_path, {f"y{l}": y for l, y in enumerate(ys)})
    ys_t = [torch.from_numpy(y) for y in ys]
    write_bytes(out / "config.json", json.dumps({"train": asdict(cfg), "model": model.config}, indent=1).encode())
    opt = torch.optim.AdamW(model.lset.parameters(), cfg.lr, weight_decay=1e-4)
    step, seen, cpu_s = 0, 0, 0.0
    if resumed is not None:
        opt.load_state_dict(resumed["opt"])
        step, seen, cpu_s = resumed["step"], resumed["seen"], resumed["cpu_seconds"]
        common.set_rng_state(resumed["rng"])
    info = common.DistInfo()
    logger = common.RunLogger(out, info)
    sched = lambda s: cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / cfg.steps, 1.0))))  # noqa: E731
    cpu0, t0 = time.process_time(), time.perf_counter()
    bar = common.progress(cfg.steps, step, info, "train LSET", unit="step")
    exit_code = 0
    with common.StopSignal() as stop:
        while step < cfg.steps:
            idx = torch.randint(0, len(ys_t[0]), (cfg.batch,))
            q = torch.randint(0, model.num_qualities, (cfg.batch,))
            res = model([y[idx] for y in ys_t], q, quant="noise")
            bits = model.bits(res)                                      # [N, 3]
            loss = bits.sum(1).mean() / 8                                # bytes per face
            for gr in opt.param_groups:
                gr["lr"] = sched(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.lset.parameters(), 5.0)
            opt.step()
            step += 1
            seen += cfg.batch
            bar.update(1)
            if step % cfg.log_every == 0:
                per = (bits.detach().mean(0) / 8).tolist()
                logger.scalars({"rate/bytes": loss.item(), "rate/basic": per[0], "rate/middle": per[1],
                                "rate/enhanced": per[2]}, seen)
                bar.set_postfix_str(f"{loss.item():.2f} B/face (mean over qualities)")
            now_cpu = cpu_s + time.process_time() - cpu0
            if step % cfg.save_every == 0 or step == cfg.steps:
                common.save_checkpoint(out, step, _state(model, opt, step, seen, now_cpu, cfg))
            halt = stop.check(time.perf_counter() - t0, cfg.max_minutes)
            if halt is not None:
                common.save_checkpoint(out, step, _state(model, opt, step, seen, now_cpu, cfg))
                exit_code, why = halt
                log(f"stopped at step {step} ({why}); resume with --resume auto")
                break
    bar.close()
    logger.close()
    if step < cfg.steps:
        raise SystemExit(exit_code or 0)
    meta = {"trainer": "machine-first", "steps": step, "vectors_seen": seen,
            "cpu_hours": round((cpu_s + time.process_time() - cpu0) / 3600, 3),
            "train_faces": int(len(train_names)), "quality_table": QUALITY_TABLE}
    path = out / "model.pt"
    fp = save_model(model, path, meta, storage="fp16")
    log(f"model written to {path} (fingerprint 0x{fp:04x})")
    return path
