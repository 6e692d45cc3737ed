"""Deterministic Gaussian coding: tables, round trips, layered streams, determinism, overhead."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from stylecodec.bitstream import BitstreamError
from stylecodec.entropy import gaussian, range_coder

SIZES = [16, 24, 40]                 # elements of basic / middle / enhanced in these tests


def gaussian_sample(n: int, seed: int, spread: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(n, generator=gen) * spread
    scales = torch.rand(n, generator=gen) * 2.0 + 0.05
    y = means + torch.randn(n, generator=gen) * scales
    return y, means, scales


def test_tables_are_the_reference():
    t = gaussian.tables()
    assert t.digest == gaussian.TABLE_SHA256
    assert len(t.levels) == gaussian.SCALE_LEVELS and np.all(np.diff(t.levels) > 0)
    assert np.all((t.levels[:-1] < t.thresholds) & (t.thresholds < t.levels[1:]))
    for v in np.concatenate([t.levels, t.thresholds]):
        assert v * 2 ** 16 == int(v * 2 ** 16) and float(np.float32(v)) == v      # exact on a 2^-16 grid
    for cdf, n in zip(t.cdfs, t.cdf_lengths):
        assert cdf[0] == 0 and cdf[-1] == 1 << 16 and len(cdf) == n and all(np.diff(cdf) > 0)


def test_tail_multiplier_matches_scipy():
    import scipy.stats

    assert gaussian.TAIL_MULTIPLIER == pytest.approx(-scipy.stats.norm.ppf(gaussian.TAIL_MASS / 2), rel=1e-14)


def test_snapping_rules():
    m = gaussian.snap_means(torch.tensor([0.03124, 0.03126, -1e9, 5000.0, 0.09375]))
    assert m.tolist() == [0.0, 0.0625, -gaussian.MEAN_MAX, gaussian.MEAN_MAX, 0.125]       # half to even at 1.5 steps
    t = gaussian.tables()
    idx = gaussian.scale_indexes(torch.tensor([0.0, 1e-3, float(t.thresholds[0]), 1e6]))
    assert idx.tolist() == [0, 0, 1, gaussian.SCALE_LEVELS - 1]
    with pytest.raises(ValueError, match="finite"):
        gaussian.scale_indexes(torch.tensor([float("nan")]))


@pytest.mark.parametrize("n", [0, 1, 3, 7, 8, 100, 1000])
def test_round_trip(n):
    y, m, s = gaussian_sample(n, seed=n)
    data = gaussian.encode(y, m, s)
    expected = gaussian.dequantize(gaussian.quantize(y, m), m)
    assert torch.equal(gaussian.decode(data, m, s), expected)
    if n:
        assert (expected - y).abs().max().item() <= 0.5
    else:
        assert data == b""


def test_round_trip_on_any_device_dtype_and_shape():
    y, m, s = gaussian_sample(24, seed=1)
    data = gaussian.encode(y.double().reshape(4, 6), m.half().float(), s.reshape(2, 12))
    out = gaussian.decode(data, m.half().float().reshape(4, 6), s.double())
    assert out.shape == (4, 6) and out.dtype == torch.float32
    if torch.cuda.is_available():
        assert torch.equal(gaussian.decode(data, m.half().float().reshape(4, 6).cuda(), s.cuda()).cpu(), out)


def test_out_of_table_symbols_use_the_escape_and_clamp():
    m = torch.zeros(10)
    s = torch.full((10,), 0.11)
    y = torch.tensor([0.0, 3.0, -7.0, 40.0, -300.0, 5000.0, -70000.0, 1e9, 2.0, -1.0])
    out = gaussian.decode(gaussian.encode(y, m, s), m, s)
    assert out.tolist() == [0.0, 3.0, -7.0, 40.0, -300.0, 5000.0, -gaussian.SYMBOL_MAX, gaussian.SYMBOL_MAX, 2.0, -1.0]


def encode_layers(seed: int, sizes=SIZES, groups: int = 4):
    """A three-layer stream coded in causal groups: the next group's parameters depend on ŷ so far."""
    gen = torch.Generator().manual_seed(seed)
    enc, steps, decoded = gaussian.StreamEncoder(), [], []
    for n in sizes:
        for chunk in torch.arange(n).chunk(groups):
            k = len(chunk)
            context = torch.cat(decoded).sum() if decoded else torch.tensor(0.0)
            m = torch.randn(k, generator=gen) * 2 + 0.01 * context
            s = torch.rand(k, generator=gen) * 1.5 + 0.1
            y = m + torch.randn(k, generator=gen) * s
            decoded.append(enc.encode(y, m, s))
            steps.append((m, s, y))
        enc.end_layer()
    return enc.finish(), steps, decoded


def decode_layers(payloads, steps, sizes=SIZES):
    dec, out = gaussian.StreamDecoder(payloads, sizes), []
    for m, s, _ in steps:
        if not dec.remaining:
            break
        out.append(dec.decode(m, s))
    dec.finish()
    return out


@pytest.mark.parametrize("present", [1, 2, 3])
def test_layered_stream_decodes_any_prefix_of_layers(present):
    payloads, steps, decoded = encode_layers(seed=7)
    out = decode_layers(payloads[:present], steps)
    assert len(out) == 4 * present
    assert all(torch.equal(a, b) for a, b in zip(out, decoded))


def test_damage_the_decoder_alone_catches():
    """Without the container's CRC, the decoder still catches part of the damage to any layer it
    decodes (a payload must be exactly what the encoder writes for its decoded symbols, and a valid
    range-coded string): always an appended byte, about half of the single-bit flips (printed). A
    minimal termination leaves little redundancy; the CRC-8 is the main check (docs/bitstream.md)."""
    caught = flips = 0
    for seed in range(3):
        payloads, steps, _ = encode_layers(seed=seed)
        for k in range(3):
            for extra in (b"\0", b"\x01", b"\xff"):
                with pytest.raises(BitstreamError, match=f"in layer {k}"):
                    decode_layers(payloads[:k] + [payloads[k] + extra], steps)
            for bit in range(8 * len(payloads[k])):
                b = bytearray(payloads[k])
                b[bit // 8] ^= 1 << (bit % 8)
                flips += 1
                try:
                    decode_layers(payloads[:k] + [bytes(b)] + payloads[k + 1:], steps)
                except BitstreamError as e:
                    assert f"in layer {k}" in str(e)
                    caught += 1
    print(f"single-bit flips caught by the decoder alone: {caught} of {flips}")
    assert caught > 0.3 * flips


def test_garbage_never_crashes_the_decoder():
    """Random, all-0xFF and all-zero payloads: the decoder raises BitstreamError (and nothing else)
    or returns every group of the layers present, in range and the same on a second decode. Garbage
    passes only where it is exactly what the encoder writes for the symbols it decodes to (e.g. an
    empty payload: the all-zero value decodes to each table's first symbol)."""
    rng = np.random.default_rng(0)
    _, steps, _ = encode_layers(seed=4)
    groups_per_layer = len(steps) // len(SIZES)
    outcomes = {"rejected": 0, "decoded": 0, "decoded_nonempty": 0}
    for trial in range(300):
        n = int(rng.integers(1, 4))
        fill = [lambda k: rng.integers(0, 256, k), lambda k: np.full(k, 255), lambda k: np.zeros(k)][trial % 3]
        payloads = [bytes(fill(int(rng.integers(0, 50))).astype(np.uint8)) for _ in range(n)]
        try:
            out = decode_layers(payloads, steps)
        except BitstreamError:
            outcomes["rejected"] += 1
            continue
        outcomes["decoded"] += 1
        outcomes["decoded_nonempty"] += any(payloads)
        assert len(out) == groups_per_layer * n
        for y_hat, (m, _, _) in zip(out, steps):
            assert y_hat.shape == m.shape and torch.isfinite(y_hat).all()
            assert (y_hat - gaussian.snap_means(m)).abs().max() <= gaussian.SYMBOL_MAX
        assert all(torch.equal(a, b) for a, b in zip(decode_layers(payloads, steps), out))
    print("garbage outcomes:", outcomes)
    assert outcomes["rejected"] > 280, outcomes


def params_from_network(batch: int, threads: int, dtype=torch.float32, device: str = "cpu"):
    """Entropy parameters for 8 'images' from a small MLP, computed in batches of ``batch``."""
    torch.set_num_threads(threads)
    torch.manual_seed(1234)
    net = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.GELU(), torch.nn.Linear(512, 512),
                              torch.nn.GELU(), torch.nn.Linear(512, 160)).to(device, dtype)
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(99)).to(device, dtype)
    with torch.no_grad():
        out = torch.cat([net(x[i:i + batch]) for i in range(0, 8, batch)])
    m, s = out.float().cpu().chunk(2, -1)
    return m * 4, torch.nn.functional.softplus(s) * 2


def streams_from_network(batch: int, threads: int, dtype=torch.float32, device: str = "cpu") -> list[str]:
    means, scales = params_from_network(batch, threads, dtype, device)
    y = means + torch.randn(means.shape, generator=torch.Generator().manual_seed(5)) * scales
    return [gaussian.encode(y[i], means[i], scales[i]).hex() for i in range(8)]


def test_streams_identical_across_batch_size_and_precision():
    threads = torch.get_num_threads()
    try:
        m8, _ = params_from_network(8, threads)
        m1, _ = params_from_network(1, threads)
        reference = streams_from_network(8, threads)
        assert streams_from_network(1, threads) == reference
        assert streams_from_network(1, threads, torch.float64) == reference
        if torch.cuda.is_available():
            assert streams_from_network(8, threads, device="cuda") == reference
    finally:
        torch.set_num_threads(threads)
    print(f"raw means differing between batch 1 and 8: {(m8 != m1).sum().item()} of {m8.numel()}")


def test_streams_identical_with_one_thread_in_a_subprocess():
    here = os.path.dirname(__file__)
    code = ("import sys; sys.path.insert(0, %r); import test_entropy; "
            "print(','.join(test_entropy.streams_from_network(1, 1)))" % here)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    threads = torch.get_num_threads()
    try:
        assert r.stdout.strip().split(",") == streams_from_network(8, max(2, threads))
    finally:
        torch.set_num_threads(threads)


def test_few_ulp_perturbations_give_identical_streams():
    payloads, steps, decoded = encode_layers(seed=11)
    gen = torch.Generator().manual_seed(0)

    def nudge(x):
        x = x.clone()
        for _ in range(4):
            step = torch.randint(-1, 2, x.shape, generator=gen)
            x = torch.nextafter(x, torch.where(step == 0, x, step * torch.inf))
        return x

    enc, nudged = gaussian.StreamEncoder(), []
    for i, (m, s, y) in enumerate(steps):
        nudged.append((nudge(m), nudge(s), y))
        enc.encode(y, *nudged[-1][:2])
        if i % 4 == 3:
            enc.end_layer()
    assert enc.finish() == payloads
    out = decode_layers(payloads, nudged)
    assert all(torch.equal(a, b) for a, b in zip(out, decoded))


def test_index_flip_rate_under_ulp_noise_is_tiny():
    gen = torch.Generator().manual_seed(1)
    s = torch.exp(torch.rand(200_000, generator=gen) * 7.7 - 2.2)           # 0.11 .. 245, log-uniform
    m = torch.randn(200_000, generator=gen) * 8
    s4 = torch.nextafter(torch.nextafter(torch.nextafter(torch.nextafter(s, s * 2), s * 2), s * 2), s * 2)
    m4 = m
    for _ in range(4):
        m4 = torch.nextafter(m4, m4 + torch.sign(m4))
    scale_flips = (gaussian.scale_indexes(s) != gaussian.scale_indexes(s4)).sum().item()
    mean_flips = (gaussian.snap_means(m) != gaussian.snap_means(m4)).sum().item()
    print(f"4-ulp flips per 200k elements: scale index {scale_flips}, mean grid {mean_flips}")
    assert scale_flips <= 5 and mean_flips <= 20


def test_likelihood_matches_the_coded_model():
    y, m, s = gaussian_sample(500, seed=2)
    m, s = m.requires_grad_(), s.requires_grad_()
    y_hat, p = gaussian.likelihood(y, m, s, mode="round")
    assert torch.equal(y_hat.detach(), gaussian.dequantize(gaussian.quantize(y, m), m))
    bits_model = -torch.log2(p).sum().item()
    bits_tables = gaussian.ideal_bits(y, m, s).sum().item()
    assert bits_model == pytest.approx(bits_tables, rel=0.01)
    (-torch.log2(p).sum()).backward()
    assert torch.isfinite(m.grad).all() and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    for mode in ("noise", "ste"):
        y_t, p = gaussian.likelihood(y.clone().requires_grad_(), m, s, mode=mode)
        assert p.shape == y.shape and (p > 0).all() and (p <= 1).all()
    levels = torch.tensor(gaussian.tables().levels, dtype=torch.float32)
    _, p_snap = gaussian.likelihood(y, m.detach(), s.detach(), mode="round")
    _, p_ref = gaussian.likelihood(y, gaussian.snap_means(m).float(), levels[gaussian.scale_indexes(s)], mode="round", snap=False)
    assert torch.equal(p_snap, p_ref)


def test_overhead_of_the_coder():
    """Bytes actually written versus the ideal cost under the coded tables (printed for the report):
    each layer is terminated on its own at about 0.3 B above its ideal."""
    rows = []
    for seed in range(40):
        payloads, steps, _ = encode_layers(seed)
        ideal = [sum(gaussian.ideal_bits(y, m, s).sum().item() for m, s, y in steps[4 * k:4 * k + 4]) / 8
                 for k in range(3)]
        rows.append([len(p) - i for p, i in zip(payloads, ideal)] + [sum(ideal)])
    per_layer = np.mean(rows, axis=0)[:3]
    ideal = np.mean(rows, axis=0)[3]
    print(f"\n3 layers {SIZES}: bytes above the ideal per layer {per_layer.round(3).tolist()}, per file "
          f"{per_layer.sum():.2f} B, ideal {ideal:.2f} B, ratio {(ideal + per_layer.sum()) / ideal:.3f}")
    assert (per_layer < 0.6).all() and per_layer.sum() < 1.5
    assert all(sum(r[:3]) < 3 for r in rows)


def test_termination_is_the_shortest():
    """The payload is the shortest string the decoder accepts: neither it without its last byte
    nor that plus one decodes to the same symbols, and it never ends in a zero byte."""
    alphabet = gaussian._alphabet()
    for seed in range(30):
        y, m, s = gaussian_sample(12, seed=seed)
        data = gaussian.encode(y, m, s)
        codes: list = []
        for v, k in zip(gaussian.quantize(y, m).tolist(), gaussian.scale_indexes(s).tolist()):
            gaussian._codes(v, k, codes)
        assert range_coder._decodes_to(alphabet, data, codes) and not data.endswith(b"\0")
        if data:
            shorter = data[:-1]
            plus = range_coder._plus_one(shorter) if shorter else None
            assert not range_coder._decodes_to(alphabet, shorter, codes)
            assert plus is None or not range_coder._decodes_to(alphabet, plus, codes)


def test_lift_is_exact_and_the_coder_is_the_reference():
    """The 24-bit tables are integer functions of the 16-bit ones; the coder writes the reference
    bytes; the pins the streams depend on."""
    for cdf in gaussian.tables().cdfs[::7]:
        f = np.diff(np.asarray(cdf, dtype=np.int64))
        f24 = range_coder.lift(f)
        assert f24.sum() == 1 << 24 and (f24 >= 1).all() and (np.abs(f24 - 256 * f) <= f * len(f) / 2 ** 16 + 2).all()
    assert range_coder.self_check() == range_coder.CODER_SHA256
    nibbles = range_coder.lift([4096] * 16)
    assert (nibbles == 1 << 20).all()                                       # escape nibbles: exactly 4 bits
    assert importlib.metadata.version("constriction") == range_coder.CONSTRICTION_VERSION
    assert importlib.metadata.version("compressai") == "1.2.8"              # its pmf_to_quantized_cdf made the tables


def test_tiny_streams_round_trip():
    for n in range(1, 9):
        y, m, s = gaussian_sample(n, seed=100 + n, spread=50.0)
        s = torch.full_like(s, 0.11)
        for _ in range(5):
            assert torch.equal(gaussian.decode(gaussian.encode(y, m, s), m, s), gaussian.dequantize(gaussian.quantize(y, m), m))


def test_empty_layers_and_shape_checks():
    enc = gaussian.StreamEncoder()
    y, m, s = gaussian_sample(5, seed=9)
    enc.end_layer()                                   # an empty basic layer
    enc.encode(y, m, s)
    payloads = enc.finish()
    assert len(payloads) == 2 and payloads[0] == b""
    dec = gaussian.StreamDecoder(payloads, [0, 5])
    assert torch.equal(dec.decode(m, s), gaussian.dequantize(gaussian.quantize(y, m), m))
    dec.finish()
    with pytest.raises(ValueError, match="latents but"):
        gaussian.quantize(y[:1], m)
    with pytest.raises(ValueError, match="remain"):
        gaussian.StreamDecoder(payloads, [0, 5]).decode(torch.zeros(6), torch.ones(6))


def test_worked_example_of_the_spec():
    """docs/bitstream.md section 6, byte for byte."""
    import hashlib

    from stylecodec.bitstream import ModelKey, StreamHeader, extract, pack

    gen = torch.Generator().manual_seed(2024)
    enc = gaussian.StreamEncoder()
    for n in [16, 24, 40]:
        m = torch.randn(n, generator=gen) * 2
        s = torch.rand(n, generator=gen) * 1.5 + 0.1
        enc.encode(m + torch.randn(n, generator=gen) * s, m, s)
        enc.end_layer()
    key = ModelKey(hashlib.sha256(b"stylecodec worked example").digest())
    data = pack(StreamHeader(resolution=256, quality=3), enc.finish(), key)
    assert data.hex(" ") == ("a2 27 6f 04 c5 ff 47 19 69 05 72 a4 6b 43 61 47 97 76 ad b1 a4 1a dc c7 67 42")
    assert extract(data, 1).hex(" ") == "a2 27 6d c5 ff 47 19 69"
