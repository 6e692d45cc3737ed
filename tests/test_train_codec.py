"""Training the codec: the objective's per-quality rate weights, rate control, the three modes,
checkpoints + resume, signals, and the exported model (tiny 64² config, a few generated faces)."""
from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylecodec.cli import main
from stylecodec.codec import Codec
from stylecodec.errors import StylecodecError
from stylecodec.gan import build_generator, save_checkpoint
from stylecodec.model import tiny_config
from stylecodec.train import common
from stylecodec.train.codec import BASIC_CONTAINER_BYTES, CONTAINER_BYTES, CodecTrainer, RateController, resolve_config, train_codec
from stylecodec.train.losses import CodecObjective, LossWeights, StandInIdentity, build_identity, rate_multipliers
from stylecodec.zoo import load, read_checkpoint

# Final validation only (val_every is large), 2 images, the real coder on 1.
FAST = dict(batch=2, val_count=3, val_images=2, coder_images=1, val_every=1000, log_every=1, snap_every=1000,
            ckpt_every=1000, workers=0, identity="auto", id_size=80, target_bytes=40, seed=3)


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: one torch thread is much faster than two under load."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, str]:
    """A tiny random prior, the tiny model config as JSON, and 8 faces it generated (PNG)."""
    root = tmp_path_factory.mktemp("codec_assets")
    torch.manual_seed(0)
    G = build_generator(64, **tiny_config()["generator"])
    save_checkpoint(G, root / "prior.pt")
    (root / "tiny.json").write_text(json.dumps(tiny_config()))
    faces = root / "faces"
    faces.mkdir()
    with torch.no_grad():
        imgs = G(torch.randn(8, G.z_dim), None, noise_mode="const").clamp(-1, 1)
    for i, img in enumerate(imgs):
        arr = ((img + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(faces / f"{i:03d}.png")
    return {"prior": str(root / "prior.pt"), "model_json": str(root / "tiny.json"), "data": str(faces)}


def _ckpt_steps(run: Path) -> list[int]:
    return [int(p.name[5:13]) for p in common.list_checkpoints(run)]


def _finite(stats: dict) -> bool:
    return bool(stats) and all(math.isfinite(v) for v in stats.values())


# ---------------------------------------------------------------- the objective
def _fake_out(bits_per_element: float, quality: torch.Tensor, dims=(2, 3, 4)) -> dict:
    n = len(quality)
    p = torch.full((), 2.0 ** -bits_per_element)
    ws = torch.zeros(n, 10, 16)
    return {"likelihoods": [p.expand(n, d) for d in dims], "quality": quality, "ws": ws,
            "ws_hat": {k: ws for k in (1, 2, 3)}}


def test_rate_weight_per_quality_is_applied():
    Q, R, ratio, lam = 6, 64, 1.6, 7.0
    m = rate_multipliers(Q, ratio)
    assert m[-1] == 1 and all(m[i] > m[i + 1] for i in range(Q - 1))   # higher quality: smaller rate weight
    assert torch.allclose(m, torch.tensor([ratio ** (Q - 1 - q) for q in range(Q)]))
    obj = CodecObjective(LossWeights(rate=lam, rate_ratio=ratio, latent=0.0), Q, R, identity=None, perceptual="none")
    x = torch.zeros(3, 3, R, R)
    quality = torch.tensor([0, 2, 5])
    total, stats = obj(_fake_out(1.0, quality), x, {}, rate_scale=0.5)
    bits = 2 + 3 + 4                                           # 1 bit per element
    want = lam * 0.5 * float(sum(m[q] * bits / R ** 2 for q in quality)) / 3
    assert math.isclose(float(total), want, rel_tol=1e-6)
    assert math.isclose(float(stats["Loss/rate"]), want, rel_tol=1e-6)
    alone = [float(obj(_fake_out(1.0, torch.tensor([q])), x[:1], {})[0]) for q in range(Q)]
    assert all(math.isclose(a / alone[-1], float(m[q]), rel_tol=1e-6) for q, a in enumerate(alone))
    assert math.isclose(float(stats["Rate/bpp"]), bits / R ** 2, rel_tol=1e-6)
    # the basic layer's own budget: an extra weight on its bits only (2 of the 9 per image)
    with_basic, _ = obj(_fake_out(1.0, quality), x, {}, rate_scale=0.5, basic_rate_scale=3.0)
    extra = lam * 3.0 * float(sum(m[q] * 2 / R ** 2 for q in quality)) / 3
    assert math.isclose(float(with_basic), want + extra, rel_tol=1e-6)


def test_distortion_terms_and_prefix_subsets():
    torch.manual_seed(0)
    R = 64
    obj = CodecObjective(LossWeights(rate=0.0, lpips=0.0, latent=0.0, l2=1.0, basic=2.0), 6, R,
                         identity=StandInIdentity(), perceptual="none")
    assert obj.prefixes() == [1, 2, 3]
    x = torch.rand(4, 3, R, R) * 2 - 1
    out = _fake_out(1.0, torch.zeros(4, dtype=torch.long))
    total, stats = obj(out, x, {1: x.clone(), 2: x.clone(), 3: x.clone()})
    assert float(total) == pytest.approx(0.0, abs=1e-5)                    # perfect decodes cost nothing
    x_hat = {k: (x + 0.1 * torch.randn_like(x)).requires_grad_(True) for k in (1, 2, 3)}
    total, stats = obj(out, x, x_hat)
    total.backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in x_hat.values())
    assert float(stats["Loss/enhanced/l2"]) == pytest.approx(0.01, rel=0.1)
    idx = torch.tensor([1, 3])                                             # prefix sampling: a subset at k=3
    sub_total, sub = obj(out, x, {3: x_hat[3][idx].detach()}, subsets={3: (idx, 1.5)})
    expect = 1.5 * float(torch.nn.functional.mse_loss(x_hat[3][idx].detach(), x[idx]))
    assert float(sub["Loss/enhanced/l2"]) == pytest.approx(expect, rel=1e-5)


def test_real_identity_and_lpips_wiring():
    from stylecodec.assets.fetch import cache_dir

    if not (cache_dir() / "facenet_casia_webface.pt").is_file() or not (cache_dir() / "lpips_alex.pt").is_file():
        pytest.skip("FaceNet / LPIPS weights are not cached (run `stylecodec assets fetch`)")
    net = build_identity("facenet", "cpu", size=96)
    obj = CodecObjective(LossWeights(rate=0.0, latent=0.0), 6, 64, identity=net, perceptual="alex")
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    out = _fake_out(1.0, torch.zeros(2, dtype=torch.long))
    same, _ = obj(out, x, {1: x, 2: x, 3: x})
    assert float(same) == pytest.approx(0.0, abs=1e-4)
    x_hat = {k: x.flip(3).clone().requires_grad_(True) for k in (1, 2, 3)}
    total, stats = obj(out, x, x_hat)
    total.backward()
    assert float(stats["Loss/basic/identity"]) > 0 and float(stats["Loss/middle/lpips"]) > 0
    assert x_hat[1].grad.abs().sum() > 0 and x_hat[2].grad.abs().sum() > 0


def test_rate_controller_steers_to_the_budget():
    rc = RateController(81, eta=0.1, overhead_bytes=6.0)
    assert rc.budget_bits == 8 * (81 - CONTAINER_BYTES - 6)
    rc.update(2 * rc.budget_bits * 4, 4)              # twice the budget: raise the rate weight
    assert rc.scale == pytest.approx(2 ** 0.1)
    rc.update(0.5 * rc.budget_bits, 1)                # half: back down
    assert rc.scale == pytest.approx(1.0)
    rc.update(123.0, 0)                               # no default-quality sample: unchanged
    assert rc.scale == pytest.approx(1.0)
    rc.calibrate(payload_bytes=50.0, ideal_bytes=46.5)
    assert rc.overhead == pytest.approx(3.5)
    other = RateController(81, eta=0.1)
    other.load_state_dict(rc.state_dict())
    assert other.scale == rc.scale and other.overhead == rc.overhead
    with_margin = RateController(81, eta=0.1, overhead_bytes=6.0, margin_bytes=3.0)
    assert with_margin.budget_bits == 8 * (81 - 3 - CONTAINER_BYTES - 6)
    with pytest.raises(StylecodecError, match="no payload"):
        RateController(CONTAINER_BYTES + 1, eta=0.1)                        # the coder's 1 byte leaves nothing
    assert RateController(CONTAINER_BYTES + 2, eta=0.1).budget_bits == 8
    assert not RateController(None, eta=0.1).enabled
    basic = RateController(24, eta=0.1, overhead_bytes=0.5, container_bytes=4, log_scale=RateController.LOW)
    assert basic.budget_bits == 8 * (24 - 4 - 0.5) and basic.scale == pytest.approx(math.exp(-5))
    assert (CONTAINER_BYTES, BASIC_CONTAINER_BYTES) == (8, 4)                 # bitstream version 2


def test_config_rules(assets):
    cfg = resolve_config({"out": "o"}, "cpu")
    assert (cfg.batch, cfg.mode, cfg.prefix_list()) == (4, "joint", [1.0, 1.0, 1.0])
    assert resolve_config({"out": "o"}, "gpu256").batch == 32
    with pytest.raises(StylecodecError, match="--preset"):
        resolve_config({"out": "o"})
    with pytest.raises(StylecodecError, match="--prior"):
        resolve_config({"out": "o", "mode": "finetune"}, "cpu")
    with pytest.raises(StylecodecError, match="joint"):
        resolve_config({"out": "o", "mode": "finetune", "prior": "p", "adv_weight": 0.1}, "cpu")
    resumed = resolve_config({"kimg": 99.0, "threads": 1}, checkpoint_config=vars(cfg))
    assert resumed.kimg == 99.0
    with pytest.raises(StylecodecError, match="differs"):
        resolve_config({"lr": 1.0}, checkpoint_config=vars(cfg))
    older = {k: v for k, v in vars(cfg).items() if k != "teacher_labels"}     # a run from before the option
    assert resolve_config({}, checkpoint_config=older).teacher_labels is None


# ---------------------------------------------------------------- the three modes
def test_pretrain_encoder_checkpoints_resumes_and_exports(assets, tmp_path: Path):
    run = tmp_path / "pre"
    given = {**FAST, "mode": "pretrain-encoder", "prior": assets["prior"], "model_json": assets["model_json"],
             "out": str(run)}
    assert train_codec({**given, "kimg": 0.004}) == 0                    # 2 steps of 2 generated faces
    assert _ckpt_steps(run) == [2] and (run / "model.pt").is_file() and (run / "tb").is_dir()
    first = common.load_checkpoint(common.latest_checkpoint(run))
    assert first["step"] == 2 and first["images_seen"] == 4 and first["kind"] == "stylecodec.codec"
    assert _finite(first["stats"]) and "Loss/latent/encoder_vs_w" in first["stats"]
    assert "Val/coder/file_bytes" in first["val"] and "Val/latent_mse_vs_w" in first["val"]
    with pytest.raises(StylecodecError, match="resume"):
        train_codec({**given, "kimg": 0.006})                             # refuses to reuse the run
    assert train_codec({**given, "kimg": 0.006}, resume="auto") == 0
    assert _ckpt_steps(run) == [2, 3]
    second = common.load_checkpoint(common.latest_checkpoint(run))
    assert second["step"] == 3 and second["images_seen"] == 6 and second["wall_time"] >= first["wall_time"]
    loaded = load(run / "model.pt")
    meta = loaded.meta
    assert meta["steps"] == 3 and meta["images_seen"] == 6 and meta["mode"] == "pretrain-encoder"
    assert meta["hardware"]["device"] == "cpu" and meta["config"]["model_config"]["resolution"] == 64
    assert meta["sources"]["prior"] == assets["prior"] and "split_rule" in meta["data"]
    stored = read_checkpoint(run / "model.pt")["state_dict"]                 # default storage: G and E halved
    assert meta["storage"] == "fp16" and stored["G.synthesis.b4.conv1.weight"].dtype == torch.float16
    assert stored["gain"].dtype == stored["inv_gain"].dtype == torch.float32                 # coding parameters exact
    codec = Codec(loaded)
    face = Image.open(Path(assets["data"]) / "000.png")
    data = codec.compress(face)
    assert data[0] == 0xA2 and codec.decompress(data).size == (64, 64)               # bitstream version 2
    assert codec.decompress(data, layers="basic").size == (64, 64)


def test_joint_with_adversarial_trains_g_and_resumes(assets, tmp_path: Path):
    run = tmp_path / "joint"
    prior = torch.load(assets["prior"], weights_only=True)["state_dict"]
    args = ["train", "codec", "--mode", "joint", "--prior", assets["prior"], "--model-json", assets["model_json"],
            "--data", assets["data"], "--out", str(run), "--adv-weight", "0.1", "--r1-interval", "1",
            "--prefix-probs", "1,1,1"]
    for k, v in FAST.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    assert main([*args, "--kimg", "0.004"]) == 0
    ck = common.load_checkpoint(common.latest_checkpoint(run))
    assert ck["step"] == 2 and "D" in ck and _finite(ck["stats"]) and "Loss/adv/D" in ck["stats"]
    g = {k[2:]: v for k, v in ck["model"].items() if k.startswith("G.synthesis.")}
    assert any(not torch.equal(v, prior[k]) for k, v in g.items() if v.is_floating_point())   # G trained
    assert all(torch.equal(ck["model"]["G." + k], v) for k, v in prior.items() if k.startswith("mapping."))
    assert main([*args, "--kimg", "0.006", "--resume", "auto"]) == 0
    assert common.load_checkpoint(common.latest_checkpoint(run))["step"] == 3
    assert load(run / "model.pt").meta["steps"] == 3


def test_basic_layer_budget_raises_its_own_rate_weight(assets, tmp_path: Path):
    """--target-basic-bpp far below what the basic layer spends: its controller climbs from LOW."""
    run = tmp_path / "basic"
    given = {**FAST, "mode": "finetune", "prior": assets["prior"], "model_json": assets["model_json"],
             "data": assets["data"], "out": str(run), "identity": "standin", "perceptual": "none",
             "rate_control": 0.5, "target_bytes": 81, "target_basic_bpp": 0.014, "kimg": 0.006}
    with pytest.raises(StylecodecError, match="--target-basic-bpp 0.003 at 64x64: .* no payload"):
        train_codec({**given, "target_basic_bpp": 0.003})  # 1 byte: less than the container
    assert train_codec(given) == 0                       # basic target: int(0.014 * 64² / 8) = 7 bytes: 8 bits
                                                         # after the container (4), the coder (1), the margin (1)
    ck = common.load_checkpoint(common.latest_checkpoint(run))
    assert ck["rate_basic"]["log_scale"] > -5.0 and ck["stats"]["Rate/basic_control_scale"] > math.exp(-5)
    trained = load(run / "model.pt")
    assert trained.meta["rate_control"]["basic_target_bytes"] == 7
    # the targets become the model's default per-face budget (target_bytes 81 at 64²: 648 bits / 4096 px)
    assert trained.model.config["rate_budget"] == {"bpp": 81 * 8 / 64 ** 2, "basic_bpp": 0.014}
    assert Codec(trained).default_budget == (81 * 8 / 64 ** 2, 0.014)
    off = resolve_config({**given, "target_basic_bpp": 0.0, "out": str(tmp_path / "off")})
    assert not off.target_basic_bpp
    with pytest.raises(StylecodecError, match="target-basic-bpp"):
        resolve_config({**given, "target_basic_bpp": -1.0})


def test_finetune_keeps_g_frozen(assets, tmp_path: Path):
    run = tmp_path / "ft"
    given = {**FAST, "mode": "finetune", "prior": assets["prior"], "model_json": assets["model_json"],
             "data": assets["data"], "out": str(run), "kimg": 0.004, "quant": "ste", "storage": "fp32"}
    assert train_codec(given) == 0
    ck = common.load_checkpoint(common.latest_checkpoint(run))
    prior = torch.load(assets["prior"], weights_only=True)["state_dict"]
    assert ck["step"] == 2 and _finite(ck["stats"])
    assert all(torch.equal(ck["model"]["G." + k], v) for k, v in prior.items())
    model = load(run / "model.pt").model
    assert all(torch.equal(model.state_dict()["G." + k], v) for k, v in prior.items())


def _stub_teacher(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Landmarks that depend on the image (a grid shifted by its mean colour): learnable, no dlib."""
    base = torch.stack(torch.meshgrid(torch.linspace(0.2, 0.8, 17), torch.linspace(0.3, 0.7, 4), indexing="xy"),
                       -1).reshape(-1, 2)[:68]
    shift = x.detach().float().mean((1, 2, 3))[:, None, None] * 0.1
    return base[None] + shift, torch.ones(len(x), dtype=torch.bool)


def test_analysis_heads_train_with_the_codec_and_are_exported(assets, tmp_path: Path, monkeypatch):
    from stylecodec.train import machine_heads
    from stylecodec.zoo import load_heads

    monkeypatch.setattr(machine_heads, "dlib_teacher", _stub_teacher)
    run = tmp_path / "heads"
    given = {**FAST, "mode": "finetune", "prior": assets["prior"], "model_json": assets["model_json"],
             "data": assets["data"], "out": str(run), "heads": "analysis", "identity": "standin"}
    assert train_codec({**given, "kimg": 0.004}) == 0
    first = common.load_checkpoint(common.latest_checkpoint(run))
    stats = first["stats"]
    assert _finite(stats) and stats["Loss/basic/heads_nme"] > 0 and stats["Loss/basic/heads_identity"] > 0
    init = machine_heads.analysis_term(load(run / "model.pt").model, StandInIdentity())
    lm_w = "heads.landmark_mlp.0.weight"
    assert not torch.equal(first["heads"]["analysis." + lm_w], init.state_dict()[lm_w])   # the heads trained
    assert bool(first["heads"]["analysis.initialised"])
    assert train_codec({**given, "kimg": 0.006}, resume="auto") == 0                   # resumes with them
    second = common.load_checkpoint(common.latest_checkpoint(run))
    assert second["step"] == 3 and not torch.equal(second["heads"]["analysis." + lm_w], first["heads"]["analysis." + lm_w])
    codec = Codec.from_pretrained(run / "model.pt")
    heads = load_heads(run / "model.pt", codec.fingerprint)                            # tagged with this codec
    assert heads.meta["steps"] == 3
    assert torch.equal(heads.state_dict()["landmark_mlp.0.weight"], second["heads"]["analysis." + lm_w])
    face = Image.open(Path(assets["data"]) / "000.png")
    res = codec.analyze(codec.compress(face))
    assert res["landmarks"].shape == (68, 2) and np.isfinite(res["landmarks"]).all()


def _labels_file(path: Path, names: list[str], seed: int = 0) -> Path:
    """A teacher-labels file like ``python -m stylecodec.analysis.teacher --export`` writes."""
    rng = np.random.default_rng(seed)
    lm = rng.uniform(0.2, 0.8, (len(names), 68, 2)).astype(np.float16)
    np.savez(path, files=np.array(names), landmarks=lm, found=np.ones(len(names), bool))
    return path


def test_labelled_images_mirror_points_with_the_image(assets, tmp_path: Path, monkeypatch):
    from stylecodec.data import ImageFolder
    from stylecodec.train.machine_heads import MIRROR_68, LabelledImages

    ds = ImageFolder(assets["data"], 64, "all")
    labels = _labels_file(tmp_path / "lm.npz", list(reversed(ds.files)))            # order does not matter
    plain = LabelledImages(ds, labels)
    x, lm, found = plain[2]
    assert torch.equal(x, ds[2]) and bool(found)
    with np.load(labels) as z:
        assert torch.allclose(lm, torch.from_numpy(z["landmarks"][list(z["files"]).index(ds.files[2])].astype(np.float32)))
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.zeros(()))                # always flip
    xf, lmf, _ = LabelledImages(ds, labels, xflip=True)[2]
    assert torch.equal(xf, x.flip(2))
    assert torch.allclose(lmf[:, 0], 1 - lm[MIRROR_68, 0]) and torch.equal(lmf[:, 1], lm[MIRROR_68, 1])
    monkeypatch.undo()
    with pytest.raises(StylecodecError, match="has no labels for 1 of the 8"):
        LabelledImages(ds, _labels_file(tmp_path / "short.npz", ds.files[1:]))
    with pytest.raises(StylecodecError, match="xflip=False"):
        LabelledImages(ImageFolder(assets["data"], 64, "all", xflip=True), labels)


def test_cached_teacher_labels_replace_dlib_in_training(assets, tmp_path: Path, monkeypatch):
    from stylecodec.train import machine_heads

    def no_dlib(x):
        raise AssertionError("the cached labels must be used, not the dlib teacher")

    monkeypatch.setattr(machine_heads, "dlib_teacher", no_dlib)
    names = sorted(os.listdir(assets["data"]))
    labels = _labels_file(tmp_path / "lm.npz", names)
    given = {**FAST, "mode": "finetune", "prior": assets["prior"], "model_json": assets["model_json"],
             "data": assets["data"], "out": str(tmp_path / "run"), "heads": "analysis", "identity": "standin",
             "teacher_labels": str(labels), "kimg": 0.004}
    assert train_codec(given) == 0
    stats = common.load_checkpoint(common.latest_checkpoint(tmp_path / "run"))["stats"]
    assert _finite(stats) and stats["Loss/basic/heads_nme"] > 0
    with pytest.raises(StylecodecError, match="needs --heads analysis"):
        resolve_config({**given, "heads": "", "out": str(tmp_path / "other")})


def test_sigint_saves_and_stops(assets, tmp_path: Path, monkeypatch, sigint_default):
    run = tmp_path / "sig"
    orig = CodecTrainer.train_step

    def step_then_signal(self, x, w=None, labels=None):
        stats = orig(self, x, w, labels)
        os.kill(os.getpid(), signal.SIGINT)
        return stats

    monkeypatch.setattr(CodecTrainer, "train_step", step_then_signal)
    given = {**FAST, "mode": "joint", "model_json": assets["model_json"], "data": assets["data"], "out": str(run),
             "kimg": 1.0, "identity": "standin", "perceptual": "none"}
    assert train_codec(given) == 130
    assert _ckpt_steps(run) == [1] and not (run / "model.pt").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_generated_faces_are_deterministic_and_w_is_known(assets, tmp_path: Path):
    cfg = resolve_config({**FAST, "mode": "pretrain-encoder", "prior": assets["prior"], "out": str(tmp_path),
                          "model_json": assets["model_json"], "kimg": 0.002, "identity": "none",
                          "perceptual": "none"})
    trainer = CodecTrainer(cfg, common.DistInfo(), log=lambda *_: None)
    a = trainer.generate(3, torch.Generator().manual_seed(5))
    b = trainer.generate(3, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and a[1].shape == (3, trainer.model.G.num_ws, trainer.model.G.w_dim)
    again = trainer.model.G.synthesis(a[1], noise_mode="const").clamp(-1, 1)
    assert torch.allclose(again, a[0], atol=1e-5)
    q = trainer.sample_quality(4000)
    share = float((q == trainer.Q - 1).float().mean())
    assert q.min() == 0 and q.max() == trainer.Q - 1
    assert share == pytest.approx(cfg.p_default + (1 - cfg.p_default) / trainer.Q, abs=0.03)
    assert np.isfinite(list(trainer.train_step(*a).values())[0].item())


# ---------------------------------------------------------------- two processes (gloo)
def _ddp_worker(rank: int, world: int, port: int, given: dict, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    orig = CodecTrainer.run

    def run_and_record(self, *args):
        status = orig(self, *args)
        flat = torch.cat([p.detach().flatten() for p in self.model.parameters()])
        torch.save({"params": flat, "rate": self.rate.state_dict()}, Path(out) / f"rank{rank}.pt")
        return status

    CodecTrainer.run = run_and_record
    assert train_codec({**given, "out": out, "device": "cpu"}) == 0


def test_two_process_gloo_run_keeps_ranks_in_sync(assets, tmp_path: Path):
    import socket

    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "ddp"
    run.mkdir()
    given = {**FAST, "batch": 4, "kimg": 0.008, "val_every": 1, "coder_every": 1, "mode": "joint",
             "prior": assets["prior"], "model_json": assets["model_json"], "data": assets["data"],
             "identity": "standin", "perceptual": "none", "prefix_probs": "1,1,1"}
    mp.spawn(_ddp_worker, args=(2, port, given, str(run)), nprocs=2, join=True)
    r0, r1 = torch.load(run / "rank0.pt"), torch.load(run / "rank1.pt")
    assert torch.equal(r0["params"], r1["params"]), "gradients were not averaged across ranks"
    assert r0["rate"] == r1["rate"], "rank 0's coder calibration did not reach rank 1"
    assert _ckpt_steps(run) == [2] and (run / "model.pt").is_file()
