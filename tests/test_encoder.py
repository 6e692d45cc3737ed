"""LayerSplit and the gradual style encoder (tiny sizes: 64x64 input, num_ws=10)."""
from __future__ import annotations

import pytest
import timm
import torch

from stylecodec.encoder import Backbone, GradualStyleBlock, GradualStyleEncoder
from stylecodec.errors import StylecodecError
from stylecodec.layers import LayerSplit, LayerSplitError

TINY = dict(w_dim=32, backbone="resnet18", fpn_width=16, style_width=16, input_resolution=64)


# -- LayerSplit ------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [10, 12, 14, 18])
def test_default_split(n):
    s = LayerSplit.default(n)
    assert (s.basic, s.middle, s.enhanced) == (range(0, 4), range(4, 8), range(8, n))
    assert s.names == ("basic", "middle", "enhanced")
    assert s.slice("middle") == slice(4, 8) and s.indices("enhanced") == range(8, n)
    assert s.prefix(1) == ["basic"] and s.prefix(3) == ["basic", "middle", "enhanced"]
    assert [s.layer_of(i) for i in (0, 3, 4, 7, 8, n - 1)] == ["basic"] * 2 + ["middle"] * 2 + ["enhanced"] * 2
    assert LayerSplit.from_dict(s.to_dict()) == s
    assert LayerSplit.from_dict({"num_ws": n}) == s
    ws = torch.randn(2, n, 8)
    assert ws[:, s.slice("enhanced")].shape == (2, n - 8, 8)


@pytest.mark.parametrize("kwargs", [
    dict(num_ws=14, basic=range(1, 4), middle=range(4, 8), enhanced=range(8, 14)),   # does not start at 0
    dict(num_ws=14, basic=range(0, 4), middle=range(5, 8), enhanced=range(8, 14)),   # gap
    dict(num_ws=14, basic=range(0, 5), middle=range(4, 8), enhanced=range(8, 14)),   # overlap
    dict(num_ws=14, basic=range(0, 4), middle=range(4, 8), enhanced=range(8, 13)),   # stops short
    dict(num_ws=14, basic=range(0, 4), middle=range(4, 8), enhanced=range(8, 15)),   # too long
    dict(num_ws=14, basic=range(0, 4), middle=range(4, 4), enhanced=range(4, 14)),   # empty layer
    dict(num_ws=14, basic=range(0, 4, 2), middle=range(4, 8), enhanced=range(8, 14)),  # step 2
    dict(num_ws=14, basic=range(4, 8), middle=range(0, 4), enhanced=range(8, 14)),   # out of order
    dict(num_ws=14, basic=[0, 4], middle=range(4, 8), enhanced=range(8, 14)),        # not a range
])
def test_split_validation(kwargs):
    with pytest.raises(LayerSplitError):
        LayerSplit(**kwargs)


def test_split_errors():
    for n in (0, 6, 8, 9):
        with pytest.raises(LayerSplitError, match="num_ws >= 10"):
            LayerSplit.default(n)
    s = LayerSplit.default(14)
    assert isinstance(LayerSplitError("x"), StylecodecError) and isinstance(LayerSplitError("x"), ValueError)
    for bad in (lambda: s.prefix(0), lambda: s.prefix(4), lambda: s.indices("fine"), lambda: s.layer_of(14),
                lambda: LayerSplit.from_dict({"num_ws": 14, "basic": [0, 4]}),
                lambda: LayerSplit.from_dict({"num_ws": 14, "coarse": [0, 4]}),
                lambda: LayerSplit.from_dict({"basic": [0, 4]})):
        with pytest.raises(LayerSplitError):
            bad()
    small = LayerSplit(6, range(0, 2), range(2, 4), range(4, 6))  # explicit split for a 16x16 generator
    assert small.size("enhanced") == 2


# -- encoder ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def psp():
    torch.manual_seed(0)
    return GradualStyleEncoder(10, **TINY).eval()


def test_encoder_shapes_and_levels(psp):
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ws = psp(x)
        ws_big = psp(torch.rand(1, 3, 128, 128) * 2 - 1)  # other sizes are resized to input_resolution
    assert ws.shape == (2, 10, 32) and ws_big.shape == (1, 10, 32)
    assert torch.isfinite(ws).all()
    # basic (0-3) reads the deepest level p3, middle (4-7) p2, enhanced (8-9) the shallowest p1
    assert psp.level_of == [2] * 4 + [1] * 4 + [0] * 2
    assert psp.backbone.reductions == [4, 8, 16]
    assert [h.spatial for h in psp.styles] == [4] * 4 + [8] * 4 + [16] * 2
    with pytest.raises(ValueError):
        psp(torch.zeros(1, 3, 64, 32))
    with pytest.raises(ValueError):
        psp(torch.zeros(1, 1, 64, 64))


def test_w_avg(psp):
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    w_avg = torch.randn(32)
    with torch.no_grad():
        ws0 = psp(x)
        psp.set_w_avg(w_avg)
        try:
            ws1 = psp(x)
        finally:
            psp.set_w_avg(torch.zeros(32))
    torch.testing.assert_close(ws1, ws0 + w_avg)
    assert "w_avg" in psp.state_dict()
    with pytest.raises(ValueError):
        psp.set_w_avg(torch.zeros(31))


def test_normalize_ws_fixes_the_scale_of_w(psp):
    """normalize_ws: every predicted w has unit RMS whatever the heads' scale; w_avg added after."""
    torch.manual_seed(0)
    enc = GradualStyleEncoder(10, **TINY, normalize_ws=True).eval()
    enc.load_state_dict(psp.state_dict())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        for head in enc.styles:                      # what joint training from scratch drifted to
            head.linear.weight.mul_(50.0)
        ws = enc(x)
        enc.set_w_avg(torch.full((32,), 3.0))
        shifted = enc(x)
    torch.testing.assert_close(ws.square().mean(2), torch.ones(2, 10))
    torch.testing.assert_close(shifted, ws + 3.0)
    assert enc.config["normalize_ws"] and not psp.config["normalize_ws"]
    with torch.no_grad():
        assert psp(x).square().mean(2).sub(1).abs().max() > 0.1   # off by default: pSp keeps W's own scale


def test_e4e_offsets_start_small():
    torch.manual_seed(0)
    enc = GradualStyleEncoder(10, mode="e4e", offsets_scale=0.1, **TINY).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ws = enc(x)
        offsets = ws[:, 1:] - ws[:, :1]
        ratio = offsets.norm(dim=-1).mean() / ws[:, 0].norm(dim=-1).mean()
        enc.offsets_scale = 0.0
        ws_flat = enc(x)
    assert ws.shape == (2, 10, 32)
    assert 0 < ratio < 0.3
    assert torch.equal(ws_flat, ws_flat[:, :1].expand_as(ws_flat))


def test_encoder_config_errors():
    with pytest.raises(ValueError, match="mode"):
        GradualStyleEncoder(10, mode="psp2", **TINY)
    with pytest.raises(ValueError, match="num_ws"):
        GradualStyleEncoder(12, split=LayerSplit.default(10), **TINY)
    with pytest.raises(LayerSplitError):
        GradualStyleEncoder(8, **TINY)
    with pytest.raises(ValueError, match="power-of-two"):
        GradualStyleBlock(8, 8, 8, spatial=12)


def test_encoder_trains():
    """Gradients reach every trainable parameter, and 60 Adam steps fit two images to two different
    target W+ (the loss falls to a fraction of its start; the outputs tell the images apart)."""
    torch.manual_seed(0)
    enc = GradualStyleEncoder(10, **TINY)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    target = torch.randn(2, 10, 32)
    ws = enc(x)
    loss0 = (ws - target).square().mean()
    loss0.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters() if p.requires_grad)
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        loss = (enc(x) - target).square().mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        ws = enc(x)
    assert float((ws - target).square().mean()) < 0.4 * loss0.item()          # measured: 0.29 of it
    assert float((ws[0] - ws[1]).square().mean()) > 0.3 * float((target[0] - target[1]).square().mean())   # 0.50


def test_backbone_local_checkpoint(tmp_path):
    torch.manual_seed(1)
    ref = timm.create_model("resnet18", pretrained=False)
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    bb = Backbone("resnet18", (1, 2, 3), checkpoint=tmp_path / "resnet18.pth")
    assert torch.equal(bb.body.layer2[0].conv1.weight, ref.layer2[0].conv1.weight)
    assert bb.channels == [64, 128, 256]
    with pytest.raises(FileNotFoundError):
        Backbone("resnet18", checkpoint=tmp_path / "missing.pth")
