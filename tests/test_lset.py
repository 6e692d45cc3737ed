"""LSET (mask, teacher forcing vs token-by-token, float64 determinism) and the layer transforms."""
from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stylecodec.entropy.coder import GroupCoder
from stylecodec.entropy.lset import LSET, LSETCursor, _fixed_exp, lset_attention_mask, token_layout
from stylecodec.entropy.transforms import LayerAnalysis, LayerSynthesis, LayerTransforms
from stylecodec.layers import LayerSplit

DIMS = (8, 12, 16)
TINY = dict(latent_dims=DIMS, group_size=4, d_model=32, n_blocks=2, n_heads=4, mlp_ratio=8)  # fc2 has K=256


def _model(dtype=torch.float64) -> LSET:
    torch.manual_seed(0)
    return LSET(**TINY).to(dtype).eval()


def _latents(n: int, dtype=torch.float64, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=dtype) * 3 for d in DIMS]


def test_mask_layout():
    layer_ids, slot_ids = token_layout([2, 3])
    assert layer_ids.tolist() == [0, 0, 1, 1, 1] and slot_ids.tolist() == [0, 1, 0, 1, 2]
    expected = torch.tensor([[1, 0, 0, 0, 0],
                             [1, 1, 0, 0, 0],
                             [1, 1, 1, 0, 0],
                             [1, 1, 1, 1, 0],
                             [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(lset_attention_mask([2, 3]), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_no_information_from_higher_layers_or_later_groups(dtype):
    model, g = _model(dtype), 4
    ys = _latents(2, dtype)
    with torch.no_grad():
        means, scales = model(ys)
        for l in range(len(DIMS)):
            for j in range(model.num_groups[l]):
                pert = [y.clone() for y in ys]
                pert[l][:, j * g:] += 100.0 * torch.randn_like(pert[l][:, j * g:])  # this and later groups
                for h in range(l + 1, len(DIMS)):                                    # higher layers
                    pert[h] = -7.0 * torch.randn_like(pert[h])
                pm, ps = model(pert)
                sl = slice(j * g, (j + 1) * g)
                assert torch.equal(pm[l][:, sl], means[l][:, sl]) and torch.equal(ps[l][:, sl], scales[l][:, sl])
                for k in range(l):  # lower layers do not see layer l at all
                    assert torch.equal(pm[k], means[k]) and torch.equal(ps[k], scales[k])
                if (l, j) != (0, 0):  # and the allowed context does matter
                    ctx = [y.clone() for y in ys]
                    if j > 0:
                        ctx[l][:, :g] += 1.0
                    else:
                        ctx[l - 1] += 1.0
                    assert not torch.equal(model(ctx)[0][l][:, sl], means[l][:, sl])


def test_token_by_token_equals_teacher_forcing():
    model, g = _model(), 4
    ys = _latents(3)
    with torch.no_grad():
        means, scales = model(ys)
        for l in range(len(DIMS)):
            for j in range(model.num_groups[l]):
                partial = ys[l][:, :j * g] if j else ys[l][:, :0]
                m, s = model.params_for_group(ys[:l] + [partial], l, j)
                assert m.shape == s.shape == (3, g)
                sl = slice(j * g, (j + 1) * g)
                assert torch.equal(m, means[l][:, sl]) and torch.equal(s, scales[l][:, sl])
        m0, _ = model.params_for_group([], 0, 0)  # unconditional prior of the first group
        assert torch.equal(m0, means[0][:1, :g])
    assert all((s > model.scale_bound).all() for s in scales)


def test_cursor_equals_teacher_forcing_and_checks_its_order():
    """The coder's cached path: each token once, the same bits as the full pass."""
    model, g = _model(), 4
    ys = _latents(3)
    with torch.no_grad():
        means, scales = model(ys)
    cursor = LSETCursor(model, 3)
    for l in range(len(DIMS)):
        for j in range(model.num_groups[l]):
            m, s = cursor.params_for_group(ys[:l] + [ys[l][:, :j * g]], l, j)
            sl = slice(j * g, (j + 1) * g)
            assert torch.equal(m, means[l][:, sl]) and torch.equal(s, scales[l][:, sl])
    assert cursor.length == model.layer_offset[-1] + model.num_groups[-1]
    skip = LSETCursor(model, 3)                                   # skipping ahead runs the tokens between
    m, _ = skip.params_for_group(ys[:2] + [ys[2][:, :8]], 2, 2)
    assert torch.equal(m, means[2][:, 8:12])
    with pytest.raises(ValueError, match="before"):
        skip.params_for_group(ys[:1], 1, 0)
    changed = LSETCursor(model, 3)
    changed.params_for_group([ys[0]], 0, 1)
    with pytest.raises(ValueError, match="changed"):
        changed.params_for_group([ys[0] + 1], 1, 0)
    for k in (1, 2):                                              # the decoder's predictions of missing layers
        pred = LSETCursor(model, 3)
        for l in range(k):
            for j in range(model.num_groups[l]):
                pred.params_for_group(ys[:l] + [ys[l]], l, j)
        ctx = list(ys[:k])
        for l in range(k, len(DIMS)):
            want = GroupCoder(model).predict(ctx, l)
            got = GroupCoder(model).predict(ctx, l, pred)
            assert torch.equal(got, want)
            ctx.append(got)


def test_predict_missing_and_complete():
    model = _model()
    coder = GroupCoder(model)
    ys = _latents(2)
    pred = coder.predict(ys[:1], 1)
    assert pred.shape == (2, DIMS[1])
    with torch.no_grad():  # greedy fixed point: each predicted group is its own predicted mean
        assert torch.equal(model([ys[0], pred])[0][1], pred)
    full = coder.complete(ys[:1])
    assert [y.shape for y in full] == [(2, d) for d in DIMS]
    assert torch.equal(full[0], ys[0]) and torch.equal(full[1], pred)
    assert coder.complete(ys) == ys
    assert coder.predict([], 0).shape == (1, DIMS[0])
    with pytest.raises(ValueError):
        coder.predict(ys[:1], 2)
    with pytest.raises(ValueError):
        model.params_for_group(ys[:1], 1, 1)  # needs layer 1's first group
    with pytest.raises(ValueError):
        model.params_for_group(ys, 0, 2)      # layer 0 has 2 groups
    with pytest.raises(ValueError):
        model([ys[0][:, :4]])


def test_float64_batch_invariant():
    model = _model()
    ys = _latents(4)
    with torch.no_grad():
        m4, s4 = model(ys)
        for i in range(4):
            m1, s1 = model([y[i:i + 1] for y in ys])
            assert all(torch.equal(a[i:i + 1], b) for a, b in zip(m4 + s4, m1 + s1))
        for l in range(len(DIMS)):
            a = model.params_for_group(ys[:l] + [ys[l]], l, 1)
            b = model.params_for_group([y[2:3] for y in ys[:l + 1]], l, 1)
            assert torch.equal(a[0][2:3], b[0]) and torch.equal(a[1][2:3], b[1])


_THREADS_SCRIPT = """
import hashlib, sys, torch
sys.path.insert(0, {root!r})
from tests.test_lset import _model, _latents
model, ys = _model(), _latents(4)
for threads in (1, 2):
    torch.set_num_threads(threads)
    with torch.no_grad():
        means, scales = model(ys)
    print(hashlib.sha256(b"".join(t.numpy().tobytes() for t in means + scales)).hexdigest())
"""


def test_float64_thread_invariant():
    """Same float64 parameters with 1 and 2 intra-op threads (fresh process) and in this process."""
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT.format(root=root)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": root}, check=True, timeout=120)
    digests = out.stdout.split()
    with torch.no_grad():
        means, scales = _model()(_latents(4))
    here = hashlib.sha256(b"".join(t.numpy().tobytes() for t in means + scales)).hexdigest()
    assert len(digests) == 2 and digests[0] == digests[1] == here


def test_float64_fixed_order_matches_float32_kernels():
    """The float64 coding path computes the same function as the float32 training path."""
    m64, ys = _model(), _latents(3)
    m32 = LSET(**TINY).eval()
    m32.load_state_dict(m64.state_dict())
    with torch.no_grad():
        out64, out32 = m64(ys), m32([y.float() for y in ys])
    for a, b in zip(out64[0] + out64[1], out32[0] + out32[1]):
        torch.testing.assert_close(a.float(), b, rtol=1e-5, atol=1e-5)
    x = torch.cat([-torch.rand(10000, dtype=torch.float64) * 700, torch.tensor([0.0, -708.5, float("-inf")],
                                                                                dtype=torch.float64)])
    torch.testing.assert_close(_fixed_exp(x[:-2]), torch.exp(x[:-2]), rtol=4.5e-16, atol=0)
    assert _fixed_exp(x[-2:]).tolist() == [0.0, 0.0]


def test_lset_trains():
    """Gradients reach every parameter and respect the causal order (a layer's parameters get no
    gradient from higher layers); 100 Adam steps on the Gaussian NLL learn that the middle layer is
    a noisy copy of part of the basic layer (its NLL falls far below that of its marginal)."""
    torch.manual_seed(0)
    model = LSET(**TINY)
    ys = [torch.randn(2, d, requires_grad=True) for d in DIMS]
    means, scales = model(ys)
    (sum(m.square().sum() for m in means) + sum(s.sum() for s in scales)).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert ys[0].grad is not None and ys[2].grad is not None
    ys = [y.detach().requires_grad_(True) for y in ys]
    means, scales = model(ys)
    (means[1].sum() + scales[1].sum()).backward()                 # layer 1's parameters see layers 0 and 1 only
    assert ys[0].grad.abs().sum() > 0 and ys[1].grad[:, -4:].abs().sum() == 0
    assert ys[2].grad is None or ys[2].grad.abs().sum() == 0
    g = torch.Generator().manual_seed(5)
    y0 = torch.randn(64, DIMS[0], generator=g) * 3
    data = [y0, y0[:, :4].repeat(1, 3) + 0.1 * torch.randn(64, DIMS[1], generator=g),
            torch.randn(64, DIMS[2], generator=g) * 0.5]

    def nll() -> list[torch.Tensor]:                              # per layer, nats per element (+ const)
        means, scales = model(data)
        return [(torch.log(s) + 0.5 * ((y - m) / s) ** 2).mean() for y, m, s in zip(data, means, scales)]

    start = float(sum(nll()))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(100):
        opt.zero_grad()
        sum(nll()).backward()
        opt.step()
    with torch.no_grad():
        end = [float(v) for v in nll()]
    marginal = math.log(float(data[1].std())) + 0.5              # the best a context-free Gaussian does
    assert sum(end) < 0.3 * start and end[1] < marginal - 2.0, (start, end, marginal)
    with pytest.raises(ValueError, match="divide"):
        LSET(latent_dims=(8, 10), group_size=4)


# -- transforms ------------------------------------------------------------------------------
def test_layer_transforms_shapes():
    a = LayerAnalysis(4, w_dim=32, latent_dim=8, proj_dim=8, hidden=16)
    s = LayerSynthesis(8, 4, w_dim=32, proj_dim=8, hidden=16)
    w = torch.randn(3, 4, 32)
    y = a(w)
    assert y.shape == (3, 8) and s(y).shape == (3, 4, 32)
    with pytest.raises(AssertionError):
        a(torch.randn(3, 5, 32))


def test_layer_transforms_w_avg_residual():
    torch.manual_seed(0)
    split = LayerSplit.default(10)
    t = LayerTransforms(split, {"basic": 8, "middle": 12, "enhanced": 16}, w_dim=32, proj_dim=8, hidden=16)
    ws = torch.randn(2, 10, 32)
    with torch.no_grad():
        ys = t.analyse(ws)
        out = t.synthesise(ys)
        shift = torch.randn(32)
        t.set_w_avg(shift)
        ys_shift = t.analyse(ws + shift)  # analysis sees w - w_avg
        out_shift = t.synthesise(ys)      # synthesis is w_avg + residual
    assert [y.shape for y in ys] == [(2, 8), (2, 12), (2, 16)] and out.shape == (2, 10, 32)
    for a, b in zip(ys, ys_shift):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(out_shift, out + shift)
    with pytest.raises(ValueError):
        t.synthesise(ys[:2])
    with pytest.raises(ValueError):
        t.analyse(torch.randn(2, 12, 32))
    t.double()
    assert t.synthesise([y.double() for y in ys]).dtype == torch.float64
