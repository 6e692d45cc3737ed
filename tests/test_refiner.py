"""The refiner's transfer between machine-first models whose PCA fits differ in component signs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stylecodec.errors import StylecodecError
from stylecodec.machine_first import MachineFirstModel
from stylecodec.train.refiner import transfer_refiner

from test_machine_first import _orth, faces, tiny_model


def _with_refiner(base: MachineFirstModel, seed: int) -> MachineFirstModel:
    m = MachineFirstModel({**base.config, "refiner": {"widths": [4, 8]}})
    m.load_state_dict(base.state_dict(), strict=False)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in m.refiner.parameters():       # a refiner that does something (its output layer starts at zero)
            p.normal_(0, 0.2)
    m.face_features = base.face_features
    return m.eval()


def _decode(m: MachineFirstModel, u8: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        return m.render(m.encode_latents(x))


def test_transfer_undoes_pca_sign_flips():
    donor = _with_refiner(tiny_model(), seed=1)
    flipped = tiny_model()
    flip = {"id": [0, 3], "shape": [1], "pix": [0, 5, 17]}
    for kind, rows in flip.items():
        basis = getattr(flipped, f"{kind}_basis").clone()
        basis[rows] *= -1
        getattr(flipped, f"{kind}_basis").copy_(basis)
    target = _with_refiner(flipped, seed=2)
    face = faces(1)[0]
    assert (_decode(donor, face) - _decode(target, face)).abs().max() > 1e-3     # different refiners
    naive = _with_refiner(flipped, seed=2)
    naive.refiner.load_state_dict(donor.refiner.state_dict())
    signs = transfer_refiner(donor, target)
    assert (signs < 0).sum().item() == 6
    assert torch.allclose(_decode(donor, face), _decode(target, face), atol=1e-5)
    assert (_decode(donor, face) - _decode(naive, face)).abs().max() > 1e-3      # a plain copy is not the same


def test_transfer_refuses_a_different_pca_or_no_refiner():
    donor = _with_refiner(tiny_model(), seed=1)
    other = _with_refiner(tiny_model(), seed=2)
    other.pix_basis.copy_(torch.from_numpy(_orth(24, 768, 9)).to(other.pix_basis.dtype))
    with pytest.raises(StylecodecError, match="pix_basis"):
        transfer_refiner(donor, other)
    with pytest.raises(StylecodecError, match="no refiner"):
        transfer_refiner(tiny_model(), other)


def test_cached_latents_of_another_pca_fit_are_refused(tmp_path):
    """A latents.npz made with a PCA fit whose components have other signs is refused, not trained on."""
    from stylecodec.train.machine_first import check_latents, training_latents

    m = tiny_model()
    rng = np.random.default_rng(0)
    n = 6
    sface = rng.normal(size=(n, 2, 128)).astype(np.float32)
    teachers = {"sface": sface, "landmarks": (0.5 + 0.02 * rng.normal(size=(n, 68, 2))).astype(np.float32)}
    small = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    ys = training_latents(m, teachers, np.arange(n), small)
    check_latents(m, ys, teachers, small, "own.npz")                      # its own latents pass
    other = tiny_model()
    basis = other.pix_basis.clone()
    basis[3] *= -1
    other.pix_basis.copy_(basis)
    with pytest.raises(StylecodecError, match="other.npz: layer 1"):
        check_latents(m, training_latents(other, teachers, np.arange(n), small), teachers, small, "other.npz")


def test_pca_signs_are_fixed():
    """The same data fitted twice gives the same components, signs included (randomised SVD with another
    random state; exact SVD of the negated data)."""
    from stylecodec.train.machine_first import _pca

    x = (np.random.default_rng(1).normal(size=(200, 40)) * np.linspace(3, 0.5, 40)).astype(np.float32)
    torch.manual_seed(0)
    _, a = _pca(x, 8, lowrank=True)
    torch.manual_seed(5)
    _, b = _pca(x, 8, lowrank=True)
    assert np.allclose(a, b, atol=1e-3)
    _, c = _pca(x.astype(np.float64), 8)
    _, d = _pca(-x.astype(np.float64), 8)
    assert np.allclose(c, d, atol=1e-8) and np.allclose(a, c, atol=1e-3)


def test_refiner_weights_file_round_trip_and_base_check(tmp_path):
    from stylecodec.refiner_weights import is_refiner_file, load_refiner_weights, save_refiner_weights

    donor = _with_refiner(tiny_model(), seed=1)
    path = tmp_path / "refiner.pt"
    save_refiner_weights(donor, path, {"images_seen": 800, "cpu_hours": 0.5})
    assert is_refiner_file(path) and not is_refiner_file(tmp_path / "missing.pt")
    target = _with_refiner(tiny_model(), seed=2)
    assert load_refiner_weights(target, path) == {"images_seen": 800, "cpu_hours": 0.5}
    for (name, a), b in zip(donor.refiner.state_dict().items(), target.refiner.state_dict().values()):
        assert torch.equal(b, a.half().float()), name                          # float16 storage
    other = _with_refiner(tiny_model(), seed=2)
    other.pix_std.mul_(2)                                                       # another base model
    with pytest.raises(StylecodecError, match="trained for model"):
        load_refiner_weights(other, path)


# ---------------------------------------------------------------- the refiner is outside the stream key
def test_refiner_is_outside_the_stream_key(tmp_path):
    """A retrained refiner decodes the streams of the model it refines (other pixels, same analysis); its
    weights are still checked on load and named by ``weights_id``."""
    from stylecodec.codec import Codec
    from stylecodec.zoo import ModelError, load, save_model

    base = tiny_model()
    one, two = _with_refiner(base, seed=1), _with_refiner(base, seed=2)
    codecs = [Codec(m) for m in (base, one, two)]
    assert len({c.fingerprint for c in codecs}) == 1 and len({c.weights_id for c in codecs}) == 3
    assert codecs[0].weights_id == f"0x{codecs[0].fingerprint:04x}"          # no refiner: the fingerprint alone
    data = codecs[0].compress(faces(1)[0], quality=3, aligned=True)
    pixels = [c.decompress(data, output="array") for c in codecs]
    assert not np.array_equal(pixels[0], pixels[1]) and not np.array_equal(pixels[1], pixels[2])
    assert all(np.array_equal(c.analyze(data)["identity"], codecs[0].analyze(data)["identity"]) for c in codecs)

    path = tmp_path / "refined.pt"
    fp = save_model(one, path)
    loaded = load(path)
    assert loaded.fingerprint == fp == codecs[0].fingerprint and Codec(loaded).weights_id == codecs[1].weights_id
    ck = torch.load(path, weights_only=True)
    ck["state_dict"]["refiner.out.bias"] = ck["state_dict"]["refiner.out.bias"] + 0.5
    torch.save(ck, tmp_path / "damaged.pt")
    with pytest.raises(ModelError, match="damaged weights"):
        load(tmp_path / "damaged.pt")
    # a file from before the refiner left the key: its fingerprint covered every weight
    from stylecodec.bitstream import fingerprint
    ck = torch.load(path, weights_only=True)
    del ck["weights_sha256"]
    ck["fingerprint"] = fingerprint(ck["state_dict"])
    torch.save(ck, tmp_path / "legacy.pt")
    assert load(tmp_path / "legacy.pt").fingerprint == fp
    ck["fingerprint"] ^= 1
    torch.save(ck, tmp_path / "legacy_bad.pt")
    with pytest.raises(ModelError, match="damaged weights"):
        load(tmp_path / "legacy_bad.pt")


_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads({threads})
from test_refiner import _with_refiner, faces, tiny_model
from stylecodec.codec import Codec
codec = Codec(_with_refiner(tiny_model(), seed=1))
print('|'.join(codec.decompress(codec.compress(f, quality=3, aligned=True), output='array').tobytes().hex()
               for f in faces(3)))
"""


def test_refined_pixels_equal_across_threads_and_batch():
    import os
    import subprocess
    import sys

    tests = os.path.dirname(__file__)
    runs = [subprocess.run([sys.executable, "-c", _SCRIPT.format(tests=tests, threads=t)], capture_output=True,
                           text=True, check=True).stdout for t in (1, 2)]
    assert runs[0] == runs[1] and runs[0].count("|") == 2
    m = _with_refiner(tiny_model(), seed=1)
    x = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 127.5 - 1 for f in faces(3)])
    with torch.no_grad():
        ys = m.encode_latents(x)
        together = m.render(ys)
        alone = torch.cat([m.render([y[i:i + 1] for y in ys]) for i in range(3)])
    assert torch.equal(together, alone)


def test_registry_puts_a_refiner_file_onto_a_codec(tmp_path, monkeypatch):
    import hashlib

    from stylecodec import zoo
    from stylecodec.codec import Codec
    from stylecodec.refiner_weights import save_refiner_weights

    base, refined = tiny_model(), _with_refiner(tiny_model(), seed=1)
    zoo.save_model(base, tmp_path / "codec.pt")
    save_refiner_weights(refined, tmp_path / "ref.pt", {"images_seen": 8})
    other = tiny_model(seed=3)
    zoo.save_model(other, tmp_path / "other.pt")
    sha = hashlib.sha256((tmp_path / "ref.pt").read_bytes()).hexdigest()
    monkeypatch.setenv("STYLECODEC_MODEL_DIR", str(tmp_path))
    monkeypatch.setitem(zoo.REGISTRY, "tiny", zoo.RegistryEntry("codec.pt", "ref.pt", sha))
    monkeypatch.setitem(zoo.REGISTRY, "tiny-wrong-base", zoo.RegistryEntry("other.pt", "ref.pt", sha))
    monkeypatch.setitem(zoo.REGISTRY, "tiny-missing", zoo.RegistryEntry("codec.pt", "nope.pt"))
    loaded = zoo.load("tiny")
    assert loaded.meta["refiner"] == {"file": "ref.pt", "images_seen": 8} and loaded.fingerprint == Codec(base).fingerprint
    for (k, a), b in zip(refined.refiner.state_dict().items(), loaded.model.refiner.state_dict().values()):
        assert torch.equal(a.half().float(), b), k
    with pytest.raises(zoo.ModelError, match="trained for model"):
        zoo.load("tiny-wrong-base")
    with pytest.raises(zoo.ModelNotFoundError, match="the refiner nope.pt"):
        zoo.load("tiny-missing")
    raw = bytearray((tmp_path / "ref.pt").read_bytes())
    raw[-100] ^= 1
    (tmp_path / "ref.pt").write_bytes(bytes(raw))
    with pytest.raises(zoo.ModelError, match="damaged refiner"):
        zoo.load("tiny")


def test_projected_discriminator_learns_and_restores():
    """Logit maps per scale; a few hinge steps separate real from fake; the random projections are
    buffers (a checkpoint restores the same D); the refiner gets gradients through the frozen trunk."""
    from stylecodec.assets.fetch import AssetError
    from stylecodec.train.projected_d import ProjectedDiscriminator, d_loss, g_loss

    try:
        d = ProjectedDiscriminator(64, proj=8, seed=1)
    except AssetError as e:
        pytest.skip(f"EfficientNet-Lite0 weights not available: {e}")
    torch.manual_seed(0)
    real = torch.rand(4, 3, 64, 64) * 2 - 1
    fake = (real * 0.2).clone().requires_grad_(True)               # low contrast: easy to tell apart
    out = d(real)
    assert [tuple(o.shape) for o in out] == [(4, 1, 4, 4), (4, 1, 4, 4), (4, 1, 4, 4), (4, 1, 2, 2)]
    opt = torch.optim.Adam(d.parameters(), 2e-3, betas=(0.0, 0.99))
    first = float(d_loss(d(real), d(fake.detach())))
    for _ in range(20):
        opt.zero_grad()
        d_loss(d(real), d(fake.detach())).backward()
        opt.step()
    assert float(d_loss(d(real), d(fake.detach()))) < first - 0.5
    g_loss(d(fake)).backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    again = ProjectedDiscriminator(64, proj=8, seed=1, features=d._features[0])
    again.load_state_dict(d.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(d(real), again(real)))
    assert not any(k.startswith("_features") for k in d.state_dict())   # the frozen trunk is not saved


def test_weight_average_halves_a_step_per_half_life_and_swaps_back():
    from stylecodec.train.refiner import WeightAverage

    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.zero_()
    ema = WeightAverage(net, half_life_kimg=0.08, batch=8)      # 10 steps per half-life
    with torch.no_grad():
        net.weight.fill_(1.0)                                    # a jump the average follows slowly
    for _ in range(10):
        ema.update()
    assert torch.allclose(ema.avg["weight"], torch.full((2, 3), 0.5), atol=1e-6)
    with ema.swapped():
        assert torch.allclose(net.weight, torch.full((2, 3), 0.5), atol=1e-6)
        y = net(torch.ones(1, 3))
    assert torch.equal(net.weight, torch.ones(2, 3))            # raw weights back after the evaluation
    assert torch.allclose(y, torch.full((1, 2), 1.5), atol=1e-5)
    other = WeightAverage(net, 0.08, 8)
    other.load_state_dict(ema.state_dict())                      # a resumed run goes on with the same average
    assert torch.equal(other.avg["weight"], ema.avg["weight"])
    with pytest.raises(StylecodecError):
        other.load_state_dict({"weight": ema.avg["weight"]})
    with pytest.raises(ValueError):
        WeightAverage(net, 0.0, 8)


def test_precision_auto_takes_the_faster_of_two_timed_steps():
    import time

    from stylecodec.train import common

    calls = []

    def step(bf16: bool, slow_bf16: bool) -> None:
        calls.append(bf16)
        time.sleep(0.02 if bf16 == slow_bf16 else 0.001)

    faster, s16, s32 = common.bf16_is_faster(lambda b: step(b, slow_bf16=True))
    assert not faster and s16 > s32 >= 0.001
    assert calls == [True] * 4 + [False] * 4          # one warm-up and three timed steps of each
    faster, s16, s32 = common.bf16_is_faster(lambda b: step(b, slow_bf16=False), repeats=1)
    assert faster and s32 > s16


def test_quality_weights_are_checked_and_normalised():
    from stylecodec.commands.train import _numbers
    from stylecodec.errors import StylecodecError
    from stylecodec.train.refiner import quality_weights

    assert quality_weights((), 8) is None
    assert np.allclose(quality_weights(_numbers("1,1,1,1,2,8,12,10", "--quality-probs"), 8),
                       np.array([1, 1, 1, 1, 2, 8, 12, 10]) / 36)
    for bad in ((1, 1), (1,) * 7 + (-1,), (0,) * 8, (1,) * 7 + (float("nan"),)):
        with pytest.raises(StylecodecError, match="quality-probs"):
            quality_weights(bad, 8)
    with pytest.raises(StylecodecError, match="not a comma-separated list"):
        _numbers("1,x", "--quality-probs")
