"""Plumbing shared by every trainer: processes, devices, data, logging, checkpoints, signals.

- Distributed: ``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; without them one process runs.
  Backend nccl on CUDA, gloo on CPU. Gradients are averaged by :func:`sync_grads`.
- Precision: bf16 autocast on CUDA only; CPU always runs fp32.
- Checkpoints: ``RUN_DIR/ckpt-<step>.pt`` (8-digit step), written to a temporary name, fsynced,
  then renamed, so an interrupted write never replaces a good file; only rank 0 writes.
  Contents are plain containers + tensors, so they load with ``torch.load(weights_only=True)``.
- Signals: SIGINT / SIGTERM set a flag (see :class:`StopSignal`); the loop saves and returns.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import platform
import random
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid
from tqdm import tqdm

from ..errors import StylecodecError
from ..files import atomic_torch_save

__all__ = ["DistInfo", "init_distributed", "cleanup_distributed", "select_device", "amp_dtype", "autocast",
           "seed_everything", "rng_state", "set_rng_state", "restore_rng", "sync_grads", "broadcast_module",
           "any_rank", "infinite_batches", "RunLogger", "progress", "save_checkpoint", "list_checkpoints",
           "latest_checkpoint", "load_checkpoint", "load_latest_checkpoint", "checkpoint_to_resume", "StopSignal",
           "Timer", "default_workers", "all_reduce_sum", "hardware_info"]

CKPT_RE = re.compile(r"^ckpt-(\d{8})\.pt$")


# ---------------------------------------------------------------- processes and devices
@dataclass
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` (``local_rank`` on its node), its device."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def merge_resumed_config(checkpoint_config: dict[str, Any], given: dict[str, Any],
                         run_control: set[str]) -> dict[str, Any]:
    """The config of a resumed run: the checkpoint's, updated with the given run-control options.

    ``given`` holds the options the user set (None already dropped). Any other option that
    differs from the checkpoint's value is an error: architecture and loss cannot change mid-run.
    """
    cfg = dict(checkpoint_config)
    for k, v in given.items():
        if k not in run_control and k in cfg and cfg[k] != v:
            raise StylecodecError(f"--{k.replace('_', '-')} {v} differs from the resumed run's {cfg[k]}; "
                                  "start a new --out to change it")
    cfg.update({k: v for k, v in given.items() if k in run_control})
    return cfg


def select_device(pref: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> this rank's GPU when CUDA is present, else CPU; 'cpu' / 'cuda' force it."""
    if pref not in ("auto", "cpu", "cuda"):
        raise StylecodecError(f"unknown device {pref!r}; use auto, cpu or cuda")
    if pref == "cuda" and not torch.cuda.is_available():
        raise StylecodecError("--device cuda was asked for but CUDA is not available")
    if pref == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def init_distributed(device: str = "auto", timeout_min: float = 30) -> DistInfo:
    """Join the process group described by torchrun's env vars, or stay single-process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = select_device(device, local)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world,
                                timeout=datetime.timedelta(minutes=timeout_min))
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return DistInfo(rank, world, local, dev)


def cleanup_distributed(info: DistInfo, barrier: bool = True) -> None:
    """Leave the process group; ``barrier=False`` after an error (other ranks may never arrive)."""
    if info.distributed and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def amp_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """Autocast dtype: bf16 on CUDA for 'auto'/'bf16', None (fp32) for 'fp32' and on any CPU."""
    if precision not in ("auto", "bf16", "fp32"):
        raise StylecodecError(f"unknown precision {precision!r}; use auto, bf16 or fp32")
    return torch.bfloat16 if device.type == "cuda" and precision != "fp32" else None


def bf16_is_faster(step: Callable[[bool], None], repeats: int = 3) -> tuple[bool, float, float]:
    """Time ``step(bf16)`` (one forward + backward of a training step; no optimiser step) with bf16
    autocast and without, after a warm-up of each; return (bf16 was faster, s/step bf16, s/step fp32),
    the median of ``repeats``. For CPUs with avx512_bf16, where the answer depends on the chip: the
    refiner's step (batch 8) was faster in bf16 on the AMD Zen 4 it was first trained on and 1.4x
    slower on an Intel Xeon (2.5 vs 1.75 s), so "auto" measures instead of trusting the flag."""
    times = {}
    for bf16 in (True, False):
        step(bf16)
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            step(bf16)
            runs.append(time.perf_counter() - t)
        times[bf16] = sorted(runs)[len(runs) // 2]
    return times[True] < times[False], times[True], times[False]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` context for ``dtype``, or a no-op when it is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


# ---------------------------------------------------------------- randomness
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states as plain containers and tensors."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], seed: int, info: "DistInfo", step: int) -> None:
    """The random streams of a resumed run: rank 0 continues the generators saved in its checkpoint
    (``state``); the other ranks, whose states are not saved, reseed from (seed, rank, step)."""
    if info.is_main:
        set_rng_state(state)
    else:
        seed_everything(seed + 7919 * info.rank + step)


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- gradients across processes
def sync_grads(module: torch.nn.Module, info: DistInfo) -> None:
    """Average the gradients of ``module`` over all ranks (one flat all-reduce), replacing NaN/Inf.

    Used instead of a DDP wrapper: GAN steps switch ``requires_grad`` between G and D and R1
    needs a double backward, neither of which DDP's reducer supports (as in StyleGAN3).
    """
    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return
    if info.distributed:
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat)
        flat /= info.world_size
        torch.nan_to_num(flat, nan=0.0, posinf=1e5, neginf=-1e5, out=flat)
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(g.view_as(p))
    else:
        for p in params:
            torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if info.distributed:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on at least one (keeps ranks in lockstep)."""
    if not info.distributed:
        return flag
    t = torch.tensor([float(flag)], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# ---------------------------------------------------------------- data
def quiet_worker(_: int = 0) -> None:
    """DataLoader worker init: leave SIGINT / SIGTERM to the main process, which saves and then
    stops its workers (a worker killed by Ctrl-C would otherwise abort the next batch fetch)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def infinite_batches(dataset: Dataset, batch_per_rank: int, info: DistInfo, seed: int = 0, workers: int = 0,
                     start_epoch: int = 0) -> Iterator[torch.Tensor | tuple[torch.Tensor, ...]]:
    """Endless shuffled batches ``[batch_per_rank, ...]`` on ``info.device``; each rank sees a disjoint shard.

    Epoch ``e`` is shuffled with ``seed + e`` (DistributedSampler), so a resumed run continues
    with fresh orders; incomplete last batches are dropped.
    """
    if len(dataset) < batch_per_rank * info.world_size:
        raise StylecodecError(f"the training set has {len(dataset)} images, fewer than one batch "
                              f"({batch_per_rank} x {info.world_size} processes)")
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed,
                                 drop_last=True)
    loader = DataLoader(dataset, batch_size=batch_per_rank, sampler=sampler, num_workers=workers, drop_last=True,
                        pin_memory=info.device.type == "cuda", persistent_workers=workers > 0,
                        worker_init_fn=quiet_worker if workers > 0 else None,
                        prefetch_factor=4 if workers > 0 else None)
    epoch = start_epoch
    while True:
        sampler.set_epoch(epoch)
        for batch in loader:
            if isinstance(batch, (list, tuple)):     # e.g. (x, landmarks, found) of LabelledImages
                yield tuple(b.to(info.device, non_blocking=True) for b in batch)
            else:
                yield batch.to(info.device, non_blocking=True)
        epoch += 1


# ---------------------------------------------------------------- logging
class RunLogger:
    """Rank-0 TensorBoard writer (``RUN_DIR/tb``) + console lines; every call is a no-op elsewhere.

    TensorBoard's step axis is the number of training images seen.
    """

    def __init__(self, run_dir: str | os.PathLike, info: DistInfo, tensorboard: bool = True):
        self.run_dir, self.enabled, self.tb = Path(run_dir), info.is_main, None
        if self.enabled and tensorboard:
            self.tb = SummaryWriter(str(self.run_dir / "tb"))

    def print(self, msg: str) -> None:
        if self.enabled:
            tqdm.write(msg)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()

    def images(self, tag: str, images: torch.Tensor, step: int, nrow: int = 8, png: str | None = None) -> None:
        """A grid of ``images [N, 3, H, W]`` in ``[-1, 1]`` to TensorBoard and optionally ``RUN_DIR/png``."""
        if not self.enabled:
            return

        grid = make_grid(images.detach().float().cpu().clamp(-1, 1), nrow=nrow, normalize=True,
                         value_range=(-1, 1), padding=1)
        if self.tb is not None:
            self.tb.add_image(tag, grid, step)
            self.tb.flush()
        if png:
            path = self.run_dir / png
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(grid.mul(255).round().byte().permute(1, 2, 0).numpy()).save(path)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def progress(total: int, initial: int, info: DistInfo, desc: str, unit: str = "img"):
    """A tqdm bar on rank 0 (disabled elsewhere)."""
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True,
                disable=not info.is_main, smoothing=0.1)


# ---------------------------------------------------------------- checkpoints
def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / f"ckpt-{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``run_dir``, oldest first (temporary files are ignored)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(run_dir / n for n in os.listdir(run_dir) if CKPT_RE.match(n))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save_checkpoint(run_dir: str | os.PathLike, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` atomically as ``ckpt-<step>.pt``; then delete all but the newest ``keep``."""
    final = checkpoint_path(run_dir, step)
    atomic_torch_save(state, final, durable=True)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return final


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint (tensors and plain containers only: ``weights_only=True``)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise StylecodecError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # a truncated/corrupt zip raises RuntimeError, pickle errors vary
        raise StylecodecError(f"checkpoint {path} is unreadable: {e}") from e


def checkpoint_to_resume(run_dir: str | os.PathLike, resume: str | None, kind: str, log=print) -> dict[str, Any] | None:
    """The checkpoint a run in ``run_dir`` continues from, or None for a fresh start. ``resume``: None
    (refuse a ``run_dir`` that already holds checkpoints), 'auto' (the newest readable checkpoint
    there, or a fresh start) or a checkpoint path. Its ``kind`` must be ``kind``
    ("stylecodec.prior", "stylecodec.codec" or "stylecodec.heads")."""
    ckpt = None
    if resume == "auto":
        found = load_latest_checkpoint(run_dir, "cpu", log=log)
        ckpt = found[1] if found else None
    elif resume:
        ckpt = load_checkpoint(resume, "cpu")
    elif list_checkpoints(run_dir):
        raise StylecodecError(f"{run_dir} already holds checkpoints; pass --resume auto to continue it "
                              "or choose a new --out")
    if ckpt is not None and ckpt.get("kind") != kind:
        what = kind.split(".")[-1]
        raise StylecodecError(f"the checkpoint to resume is not a {what}-training checkpoint")
    return ckpt


def load_latest_checkpoint(run_dir: str | os.PathLike, map_location: str | torch.device = "cpu",
                           log=print) -> tuple[Path, dict[str, Any]] | None:
    """Newest readable checkpoint in ``run_dir`` (skipping unreadable ones, with a message), or None."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path, map_location)
        except StylecodecError as e:
            log(f"warning: {e}; trying an older one")
    return None


# ---------------------------------------------------------------- signals
class StopSignal:
    """Context: SIGINT / SIGTERM set ``requested`` (the signal's name) instead of killing the process.

    A second SIGINT raises KeyboardInterrupt at once. Handlers are installed only in the
    main thread and the previous ones are restored on exit.
    """

    def __init__(self):
        self.requested: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def check(self, elapsed_s: float, max_minutes: float | None, info: "DistInfo | None" = None) -> tuple[int, str] | None:
        """(exit status, reason) when the loop must stop -- a signal (130 SIGINT, 143 SIGTERM) or
        ``elapsed_s`` past ``max_minutes`` -- else None. With ``info`` every rank stops together."""
        over_time = max_minutes is not None and elapsed_s > max_minutes * 60
        flag = bool(self.requested) or over_time
        if not (any_rank(flag, info) if info is not None else flag):
            return None
        if self.requested:
            return (130 if self.requested == "SIGINT" else 143), self.requested
        return 0, f"time limit ({max_minutes} min)" if over_time else "stopped on another rank"


class Timer:
    """Seconds since construction plus an offset (wall time carried over from earlier runs)."""

    def __init__(self, offset: float = 0.0):
        self.start, self.offset = time.perf_counter(), offset

    def __call__(self) -> float:
        return self.offset + time.perf_counter() - self.start


# ---------------------------------------------------------------- small generic helpers
def default_workers(info: DistInfo) -> int:
    """Loader processes per rank: the CPUs left over, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cpus // info.world_size - 1))


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Element-wise sum of ``values`` over all ranks (a copy; ``values`` itself when single-process)."""
    if not info.distributed:
        return values
    out = values.detach().clone().to(info.device)
    dist.all_reduce(out)
    return out


def hardware_info(info: DistInfo) -> dict[str, Any]:
    """Plain description of where a run trains (for training records / model cards)."""
    hw: dict[str, Any] = {"device": info.device.type, "world_size": info.world_size,
                          "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                          "cpu": platform.processor() or platform.machine(), "torch": str(torch.__version__)}
    if info.device.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(info.device)
    return hw
