"""The machine-first model: config rules, coding round trips through Codec, the heads, prefixes,
the static first layer of the LSET, checkpoints, determinism across thread counts and batch sizes."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from stylecodec.bitstream import BitstreamError, extract
from stylecodec.codec import Codec
from stylecodec.entropy.lset import LSET, LSETCursor
from stylecodec.machine_first import GAIN_OFF, MachineFirstModel, make_machine_first_config, quality_gains
from stylecodec.zoo import build_model, load, save_model

TINY = {"resolution": 32, "pixel_resolution": 16, "id_dims": 8, "shape_dims": 8,
        "latent_dims": {"basic": 16, "middle": 8, "enhanced": 16},
        "lset": {"d_model": 16, "n_blocks": 1, "n_heads": 2}, "num_qualities": 4}
TABLE = [{"id": [k, 0.1], "shape": [4, 0.02], "pix": [8, k2, 1.0]} for k, k2 in ((2, 0), (4, 4), (6, 8), (8, 16))]


def _orth(k: int, d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, k)))
    return q.T


def fake_features(u8: np.ndarray) -> dict:
    """Deterministic stand-in for SFace + dlib: a function of the pixels only."""
    n = len(u8)
    rng = np.random.default_rng(int(u8.astype(np.int64).sum()) % 100003)
    e = rng.normal(size=(n, 128))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    lm = 0.5 + 0.02 * rng.normal(size=(n, 68, 2))
    return {"identity": e.astype(np.float32), "landmarks": lm.astype(np.float32), "found": np.ones(n, bool)}


def tiny_model(seed: int = 0) -> MachineFirstModel:
    torch.manual_seed(seed)
    m = MachineFirstModel(TINY)
    m.set_pca("id", np.zeros(128), _orth(8, 128, 1), np.full(8, 0.05))
    m.set_pca("shape", np.full(136, 0.5), _orth(8, 136, 2), np.full(8, 0.02))
    m.set_pca("pix", np.zeros(3 * 16 * 16), _orth(24, 768, 3), np.linspace(5, 1, 24))
    g = quality_gains(m, TABLE)
    with torch.no_grad():
        m.gain.copy_(g)
        m.inv_gain.copy_(1 / g)
    m.face_features = fake_features
    return m.eval()


def faces(n: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_config_rules():
    with pytest.raises(ValueError, match="id_dims \\+ shape_dims"):
        make_machine_first_config({"latent_dims": {"basic": 100, "middle": 64, "enhanced": 128}})
    with pytest.raises(ValueError, match="unknown config key"):
        make_machine_first_config({"nope": 1})
    with pytest.raises(ValueError, match="num_qualities"):
        make_machine_first_config({"num_qualities": 9})
    assert isinstance(build_model(make_machine_first_config()), MachineFirstModel)


def test_quality_gains_switch_elements_off():
    m = tiny_model()
    g = m.gain.detach()
    assert torch.all(g[0, 2:8] == GAIN_OFF) and torch.all(g[0, :2] > 0.4)      # q0 codes 2 identity elements
    assert torch.all(g[3, :8] > GAIN_OFF)                                        # q3 codes all 8
    o = m.offsets[2]
    assert torch.all(g[0, o:] == GAIN_OFF) and torch.all(g[3, o:] > GAIN_OFF)   # enhanced off at q0, on at q3


def test_static_first_layer_runs_no_transformer_and_matches_forward():
    lset = LSET([16, 8], group_size=8, d_model=16, n_blocks=1, n_heads=2, static_first_layer=True).double()
    with torch.no_grad():
        lset.static_raw.normal_()
    ys = [torch.randn(3, 16, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)]
    means, scales = lset(ys)
    for j in range(2):
        m, s = lset.params_for_group([ys[0]] if j else [], 0, j)
        assert torch.equal(m.expand(3, -1), means[0][:, j * 8:(j + 1) * 8])
        assert torch.equal(s.expand(3, -1), scales[0][:, j * 8:(j + 1) * 8])
    cursor = LSETCursor(lset, 3)
    cursor.params_for_group(ys[:1], 0, 1)
    assert cursor.length == 0                                       # nothing ran for the basic layer
    m1, s1 = cursor.params_for_group(ys[:1], 1, 0)                  # layer 1 sees layer 0's tokens
    assert torch.equal(m1, means[1]) and torch.equal(s1, scales[1])
    ys2 = [ys[0] + 1, ys[1]]
    assert not torch.equal(lset(ys2)[0][1], means[1])               # ... and depends on them


def test_round_trip_prefixes_heads_and_rate_order():
    m = tiny_model()
    codec = Codec(m)
    img = faces(1)[0]
    sizes = []
    for q in codec.quality_range:
        data = codec.compress(img, quality=q, aligned=True)
        sizes.append((len(data), len(extract(data, 1))))
        for layers in ("basic", "middle", "enhanced"):
            out = codec.decompress(data, layers=layers, output="array")
            assert out.shape == (32, 32, 3) and out.dtype == np.uint8
        info = codec.analyze(data)
        assert info["identity"].shape == (128,) and abs(np.linalg.norm(info["identity"]) - 1) < 1e-5
        assert info["landmarks"].shape == (68, 2)
        assert codec.analyze(extract(data, 1))["identity"].tolist() == info["identity"].tolist()
    basic = [b for _, b in sizes]
    assert basic[-1] > basic[0] and sizes[-1][0] > sizes[0][0]       # more coded elements -> more bytes
    # the heads reconstruct the encoder's inputs up to quantisation
    feats = fake_features(np.asarray(img)[None])
    data = codec.compress(img, quality=3, aligned=True)
    ident = codec.analyze(data)["identity"]
    proj = m.id_basis.numpy().T @ (m.id_basis.numpy() @ feats["identity"][0])    # what 8 components can hold
    assert np.dot(ident, proj / np.linalg.norm(proj)) > 0.9


def test_decoding_other_model_or_damage_is_an_error():
    a, b = tiny_model(0), tiny_model(1)
    with torch.no_grad():
        b.gain.mul_(1.01)
    data = Codec(a).compress(faces(1)[0], quality=2, aligned=True)
    with pytest.raises(BitstreamError):
        Codec(b).decompress(data)
    bad = bytearray(data)
    bad[-1] ^= 0x5A
    with pytest.raises(BitstreamError):
        Codec(a).decompress(bytes(bad))


def test_checkpoint_round_trip_keeps_fingerprint_and_streams(tmp_path):
    m = tiny_model()
    path = tmp_path / "mf.pt"
    fp = save_model(m, path, {"note": "test"}, storage="fp16")
    loaded = load(path)
    assert isinstance(loaded.model, MachineFirstModel) and loaded.fingerprint == fp
    loaded.model.face_features = fake_features
    c1, c2 = Codec(load(path)), Codec(loaded)
    c1.model.face_features = fake_features
    img = faces(1)[0]
    assert c1.compress(img, quality=2, aligned=True) == c2.compress(img, quality=2, aligned=True)


def test_batch_size_does_not_change_streams():
    codec = Codec(tiny_model())
    x = torch.cat([codec.preprocess(f, aligned=True) for f in faces(3)])
    ys = codec.encode_latents(x)
    together = codec.compress_latents(ys, 3)
    alone = [codec.compress_latents([y[i:i + 1] for y in ys], 3)[0] for i in range(3)]
    assert together == alone


_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_machine_first import tiny_model, faces
from stylecodec.codec import Codec
torch.set_num_threads({threads})
codec = Codec(tiny_model())
out = []
for f in faces(3):
    d = codec.compress(f, quality=3, aligned=True)
    out.append(d.hex() + ':' + codec.decompress(d, output='array').tobytes().hex()[:4000])
print('|'.join(out))
"""


def test_streams_and_decodes_equal_across_threads_and_processes():
    import os
    tests = os.path.dirname(__file__)
    runs = [subprocess.run([sys.executable, "-c", _SCRIPT.format(tests=tests, threads=t)], capture_output=True,
                           text=True, check=True).stdout for t in (1, 2)]
    assert runs[0] == runs[1] and runs[0].count("|") == 2


def test_basic_prefix_coded_alone_equals_extract_and_budget_choice_unchanged():
    codec = Codec(tiny_model())
    x = torch.cat([codec.preprocess(f, aligned=True) for f in faces(3)])
    ys = codec.encode_latents(x)
    for q in codec.quality_range:
        whole = codec.compress_latents(ys, q)
        assert codec.compress_latents(ys, q, n_layers=1) == [extract(s, 1) for s in whole]
    # the budget search (basic layer sized alone first) picks what coding every quality whole picks
    from stylecodec.rate import choose_quality, stream_sizes
    for f in faces(3, seed=5):
        for basic_bpp in (0.02, 0.04, 0.08):
            ys1 = codec.encode_latents(codec.preprocess(f, aligned=True))
            ref, _ = choose_quality(codec.quality_range, lambda q: stream_sizes(codec.compress_latents(ys1, q)[0]),
                                    32, 0.5, basic_bpp)
            data, _ = codec.compress_within(f, 0.5, basic_bpp, aligned=True)
            assert data == codec.compress_latents(ys1, ref)[0]
