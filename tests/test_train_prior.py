"""Training the prior: data splits and packing, DiffAugment, the loop, resume, checkpoints, signals, DDP."""
from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylecodec.cli import main
from stylecodec.data import ImageFolder, PackedImages, open_dataset, pack_images, split_files
from stylecodec.errors import StylecodecError
from stylecodec.train import common
from stylecodec.train.augment import diff_augment
from stylecodec.train.prior import PriorTrainer, resolve_config, train_prior


TINY = ["--resolution", "16", "--batch", "4", "--channel-base", "64", "--channel-max", "16", "--map-layers", "1",
        "--z-dim", "16", "--w-dim", "16", "--val-count", "2", "--workers", "0", "--r1-interval", "2",
        "--log-kimg", "0.004", "--snap-kimg", "1", "--ckpt-kimg", "1", "--ema-kimg", "0.01", "--r1-gamma", "0.1"]
TINY_GIVEN = dict(resolution=16, batch=4, channel_base=64, channel_max=16, map_layers=1, z_dim=16, w_dim=16,
                  val_count=2, workers=0, r1_interval=2, log_kimg=0.004, snap_kimg=1.0, ckpt_kimg=1.0,
                  ema_kimg=0.01, r1_gamma=0.1)


def make_faces(folder: Path, n: int = 10, size: int = 20, shuffle_names: bool = True) -> list[str]:
    """``n`` random RGB JPEGs named so that sorting differs from creation order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"{(i * 7) % n:03d}_face.jpg" for i in range(n)] if shuffle_names else [f"{i:03d}.jpg" for i in range(n)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / name, quality=95)
    return names


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets gain nothing from threads, and on a busy box OpenMP spinning makes 2 threads slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def faces(tmp_path: Path) -> Path:
    make_faces(tmp_path / "faces")
    return tmp_path / "faces"


# ---------------------------------------------------------------- data
def test_split_keeps_last_files_by_name_for_validation(faces: Path):
    names = sorted(os.listdir(faces))
    train = ImageFolder(faces, 16, "train", val_count=3)
    val = ImageFolder(faces, 16, "val", val_count=3)
    assert val.files == names[-3:] and train.files == names[:-3]
    assert not set(train.files) & set(val.files)
    assert len(ImageFolder(faces, 16, "all", val_count=3)) == len(names)
    x = train[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    assert split_files(["b", "c", "a"], "val", 1) == ["c"]


def test_split_of_utkface_is_the_last_1000(utkface_dir: Path):
    names = sorted(os.listdir(utkface_dir))
    train, val = ImageFolder(utkface_dir, 64, "train"), ImageFolder(utkface_dir, 64, "val")
    assert val.files == names[-1000:] and len(train) == len(names) - 1000
    assert train.files[-1] < val.files[0]


def test_dataset_errors_are_clear(tmp_path: Path):
    with pytest.raises(StylecodecError, match="does not exist"):
        ImageFolder(tmp_path / "nope", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StylecodecError, match="holds no images"):
        ImageFolder(tmp_path / "empty", 16)
    make_faces(tmp_path / "few", n=3)
    with pytest.raises(StylecodecError, match="val-count"):
        ImageFolder(tmp_path / "few", 16, "train", val_count=1000)


def test_pack_round_trip(faces: Path, tmp_path: Path):
    ref = ImageFolder(faces, 16, "train", val_count=2)
    n = pack_images(faces, tmp_path / "raw.npy", 16, "train", val_count=2)
    raw = PackedImages(tmp_path / "raw.npy")
    assert n == len(raw) == len(ref)
    assert isinstance(raw.pixels, np.memmap)
    for i in range(n):
        assert torch.equal(raw[i], ref[i])
    pack_images(faces, tmp_path / "orig.npz", None, "train", val_count=2)  # original file bytes
    orig = PackedImages(tmp_path / "orig.npz", resolution=16)
    assert orig.names == ref.files and orig.split == "train" and all(torch.equal(orig[i], ref[i]) for i in range(n))
    pack_images(faces, tmp_path / "val.npz", None, "val", val_count=2)
    with pytest.raises(StylecodecError, match="'val' split"):
        open_dataset(tmp_path / "val.npz", 16, "train")
    pack_images(faces, tmp_path / "jpg16.npz", 16, "train", val_count=2)  # re-encoded at 16 px
    assert (PackedImages(tmp_path / "jpg16.npz")[0] - ref[0]).abs().mean() < 0.1
    cap = 128 + 3 * 16 * 16 * 3  # .npy header + 3 images
    assert pack_images(faces, tmp_path / "part.npy", 16, "train", val_count=2, max_bytes=cap) == 3
    assert os.path.getsize(tmp_path / "part.npy") <= cap
    assert 0 < pack_images(faces, tmp_path / "small.npz", None, "train", val_count=2, max_bytes=6000) < n
    assert os.path.getsize(tmp_path / "small.npz") <= 6000
    both = open_dataset(str(tmp_path / "[rp]a*.npy"), 16)
    assert len(both) == n + 3
    assert PackedImages(tmp_path / "raw.npy", resolution=8)[0].shape == (3, 8, 8)
    with pytest.raises(StylecodecError):
        PackedImages(tmp_path / "missing.npy")


# ---------------------------------------------------------------- augmentation
def test_diffaugment_is_differentiable_and_keeps_shape():
    x = torch.rand(6, 3, 16, 16, requires_grad=True) * 2 - 1
    x.retain_grad()
    y = diff_augment(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.equal(diff_augment(x.detach(), ""), x.detach())
    with pytest.raises(ValueError):
        diff_augment(x, "rotate")


# ---------------------------------------------------------------- the loop, resume, checkpoints
def _ckpt_steps(run: Path) -> list[int]:
    return [int(p.name[5:13]) for p in common.list_checkpoints(run)]


def test_train_writes_checkpoint_and_resume_continues(faces: Path, tmp_path: Path):
    run = tmp_path / "run"
    args = ["train", "prior", "--data", str(faces), "--out", str(run), *TINY]
    assert main([*args, "--kimg", "0.008"]) == 0  # 8 images = 2 steps of 4
    assert _ckpt_steps(run) == [2] and (run / "prior.pt").is_file() and (run / "tb").is_dir()
    first = common.load_checkpoint(common.latest_checkpoint(run))
    assert first["step"] == 2 and first["images_seen"] == 8
    assert all(np.isfinite(v) for v in first["stats"].values()) and "Loss/G/loss" in first["stats"]
    assert main([*args, "--kimg", "0.016"]) == 1  # refuses to overwrite a run without --resume
    assert main([*args, "--kimg", "0.016", "--resume", "auto"]) == 0
    assert _ckpt_steps(run) == [2, 4]
    second = common.load_checkpoint(common.latest_checkpoint(run))
    assert second["step"] == 4 and second["images_seen"] == 16 and second["wall_time"] >= first["wall_time"]
    assert all(np.isfinite(v) for v in second["stats"].values())
    assert main([*args, "--kimg", "0.024", "--resume", "auto", "--z-dim", "32"]) == 1  # architecture is fixed


def test_resume_after_transfer_without_optimiser_state(faces: Path, tmp_path: Path):
    """A checkpoint split with --drop optimisers --half and joined again resumes (Adam restarts)."""
    from stylecodec.train.transfer import join_checkpoint, split_checkpoint

    run = tmp_path / "run"
    args = ["train", "prior", "--data", str(faces), "--out", str(run), *TINY]
    assert main([*args, "--kimg", "0.008"]) == 0
    ck = common.latest_checkpoint(run)
    split_checkpoint(ck, tmp_path / "parts", drop=("optimisers",), half=True)
    ck.unlink()
    join_checkpoint(tmp_path / "parts", ck)
    assert main([*args, "--kimg", "0.016", "--resume", "auto"]) == 0
    second = common.load_checkpoint(common.latest_checkpoint(run))
    assert second["step"] == 4 and "optimisers" in second


def test_resolve_config_presets_and_resume_rules():
    cfg = resolve_config({"data": "d", "out": "o"}, "cpu64")
    assert (cfg.resolution, cfg.batch) == (64, 16)
    assert resolve_config({"data": "d", "out": "o", "batch": 8}, "gpu256").batch == 8
    with pytest.raises(StylecodecError, match="--preset"):
        resolve_config({"data": "d", "out": "o"})
    resumed = resolve_config({"kimg": 99.0, "batch": 16}, checkpoint_config=vars(cfg))
    assert resumed.kimg == 99.0


def test_interrupted_checkpoint_write_never_corrupts_latest(tmp_path: Path, monkeypatch):
    good = common.save_checkpoint(tmp_path, 2, {"step": 2, "w": torch.ones(3)})
    (tmp_path / "ckpt-00000003.pt.tmp999").write_bytes(b"half a checkpoint")  # a writer killed mid-way
    assert common.latest_checkpoint(tmp_path) == good

    def dying_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(StylecodecError, match="cannot write .*ckpt-00000003.pt: No space left"):
        common.save_checkpoint(tmp_path, 3, {"step": 3})
    monkeypatch.undo()
    assert common.latest_checkpoint(tmp_path) == good and common.load_checkpoint(good)["step"] == 2
    assert [p.name for p in tmp_path.glob("*.tmp*")] == ["ckpt-00000003.pt.tmp999"]  # ours was removed
    (tmp_path / "ckpt-00000004.pt").write_bytes(b"truncated")  # e.g. copied by hand, cut short
    path, state = common.load_latest_checkpoint(tmp_path, log=lambda *_: None)
    assert path == good and state["step"] == 2


def test_sigint_saves_a_checkpoint_and_stops(faces: Path, tmp_path: Path, monkeypatch, sigint_default):
    run = tmp_path / "run"
    orig = PriorTrainer.train_step

    def step_then_signal(self, real):
        stats = orig(self, real)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return stats

    monkeypatch.setattr(PriorTrainer, "train_step", step_then_signal)
    rc = train_prior({**TINY_GIVEN, "data": str(faces), "out": str(run), "kimg": 1.0})
    assert rc == 130
    assert _ckpt_steps(run) == [3] and not (run / "prior.pt").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---------------------------------------------------------------- two processes (gloo)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    orig = PriorTrainer.run

    def run_and_record(self, dataset):
        status = orig(self, dataset)
        flat = torch.cat([p.detach().flatten() for p in self.G.parameters()] +
                         [p.detach().flatten() for p in self.D.parameters()])
        torch.save({"params": flat, "shard": len(dataset)}, Path(out) / f"rank{rank}.pt")
        return status

    PriorTrainer.run = run_and_record
    assert train_prior({**TINY_GIVEN, "data": data, "out": out, "kimg": 0.008, "device": "cpu"}) == 0


def test_two_process_gloo_run_keeps_ranks_in_sync(faces: Path, tmp_path: Path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    run = tmp_path / "run"
    run.mkdir()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # import torch._dynamo (~5 s) once, before forking
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(faces), str(run)), nprocs=2, join=True,
                       start_method="fork" if "fork" in mp.get_all_start_methods() else "spawn")
    r0, r1 = torch.load(run / "rank0.pt"), torch.load(run / "rank1.pt")
    assert torch.equal(r0["params"], r1["params"]), "gradients were not averaged across ranks"
    assert _ckpt_steps(run) == [2] and (run / "prior.pt").is_file()
    assert common.load_checkpoint(common.latest_checkpoint(run))["images_seen"] == 8
