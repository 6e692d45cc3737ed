"""StyleGAN2 networks (stylecodec.gan): shapes, names, numerics, official-pickle loading, CLI."""
from __future__ import annotations

import argparse
import collections
import copy
import importlib.util
import io
import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from stylecodec.errors import StylecodecError
from stylecodec.gan import (Discriminator, Generator, OfficialWeightsError, UnsafeOfficialPickleError,
                            build_discriminator, build_generator, load_checkpoint, load_official, num_ws_for,
                            save_checkpoint)
from stylecodec.gan import ops
from stylecodec.safe_unpickle import UnsafePickleError

TINY = dict(z_dim=16, c_dim=0, w_dim=16, img_channels=3, mapping_kwargs=dict(num_layers=2))


def tiny_g(res=32, **syn):
    torch.manual_seed(0)
    G = Generator(img_resolution=res, synthesis_kwargs=dict(channel_base=16 * res, channel_max=16, **syn), **TINY)
    with torch.no_grad():   # make noise and w_avg matter, as in a trained net
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
        G.mapping.w_avg.normal_()
    return G.eval()


# ----------------------------------------------------------------------------- shapes, names

@pytest.mark.parametrize("res", [4, 8, 16, 32, 64])
def test_shapes_and_num_ws(res):
    G = tiny_g(res)
    assert G.num_ws == num_ws_for(res) == 2 * int(math.log2(res)) - 2 == G.mapping.num_ws
    assert G.num_ws == sum(getattr(G.synthesis, f"b{r}").num_conv for r in G.synthesis.block_resolutions) + 1
    z = torch.randn(2, 16)
    ws = G.mapping(z, None)
    assert ws.shape == (2, G.num_ws, 16)
    img = G.synthesis(ws, noise_mode="const")
    assert img.shape == (2, 3, res, res) and img.dtype == torch.float32
    with pytest.raises(AssertionError, match="synthesis ws"):
        G.synthesis(ws[:, 1:])


def test_channel_widths_follow_official_rule():
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=256, img_channels=3,
                  synthesis_kwargs=dict(channel_base=16384, channel_max=256), mapping_kwargs=dict(num_layers=1))
    want = {4: 256, 8: 256, 16: 256, 32: 256, 64: 256, 128: 128, 256: 64}
    assert G.synthesis.channels_dict == want
    assert G.synthesis.b128.conv0.weight.shape == (128, 256, 3, 3)
    assert G.num_ws == 14


OFFICIAL_G32_NAMES = """
synthesis.b4.const synthesis.b4.resample_filter synthesis.b4.conv1.weight synthesis.b4.conv1.noise_strength
synthesis.b4.conv1.bias synthesis.b4.conv1.resample_filter synthesis.b4.conv1.noise_const
synthesis.b4.conv1.affine.weight synthesis.b4.conv1.affine.bias synthesis.b4.torgb.weight synthesis.b4.torgb.bias
synthesis.b4.torgb.affine.weight synthesis.b4.torgb.affine.bias
synthesis.b8.resample_filter synthesis.b8.conv0.weight synthesis.b8.conv0.noise_strength synthesis.b8.conv0.bias
synthesis.b8.conv0.resample_filter synthesis.b8.conv0.noise_const synthesis.b8.conv0.affine.weight
synthesis.b8.conv0.affine.bias synthesis.b8.conv1.weight synthesis.b8.conv1.noise_strength synthesis.b8.conv1.bias
synthesis.b8.conv1.resample_filter synthesis.b8.conv1.noise_const synthesis.b8.conv1.affine.weight
synthesis.b8.conv1.affine.bias synthesis.b8.torgb.weight synthesis.b8.torgb.bias synthesis.b8.torgb.affine.weight
synthesis.b8.torgb.affine.bias
synthesis.b16.resample_filter synthesis.b16.conv0.weight synthesis.b16.conv0.noise_strength synthesis.b16.conv0.bias
synthesis.b16.conv0.resample_filter synthesis.b16.conv0.noise_const synthesis.b16.conv0.affine.weight
synthesis.b16.conv0.affine.bias synthesis.b16.conv1.weight synthesis.b16.conv1.noise_strength
synthesis.b16.conv1.bias synthesis.b16.conv1.resample_filter synthesis.b16.conv1.noise_const
synthesis.b16.conv1.affine.weight synthesis.b16.conv1.affine.bias synthesis.b16.torgb.weight
synthesis.b16.torgb.bias synthesis.b16.torgb.affine.weight synthesis.b16.torgb.affine.bias
synthesis.b32.resample_filter synthesis.b32.conv0.weight synthesis.b32.conv0.noise_strength synthesis.b32.conv0.bias
synthesis.b32.conv0.resample_filter synthesis.b32.conv0.noise_const synthesis.b32.conv0.affine.weight
synthesis.b32.conv0.affine.bias synthesis.b32.conv1.weight synthesis.b32.conv1.noise_strength
synthesis.b32.conv1.bias synthesis.b32.conv1.resample_filter synthesis.b32.conv1.noise_const
synthesis.b32.conv1.affine.weight synthesis.b32.conv1.affine.bias synthesis.b32.torgb.weight
synthesis.b32.torgb.bias synthesis.b32.torgb.affine.weight synthesis.b32.torgb.affine.bias
mapping.w_avg mapping.fc0.weight mapping.fc0.bias mapping.fc1.weight mapping.fc1.bias
""".split()

OFFICIAL_D32_NAMES = """
b32.resample_filter b32.fromrgb.weight b32.fromrgb.bias b32.fromrgb.resample_filter b32.conv0.weight b32.conv0.bias
b32.conv0.resample_filter b32.conv1.weight b32.conv1.bias b32.conv1.resample_filter b32.skip.weight
b32.skip.resample_filter b16.resample_filter b16.conv0.weight b16.conv0.bias b16.conv0.resample_filter
b16.conv1.weight b16.conv1.bias b16.conv1.resample_filter b16.skip.weight b16.skip.resample_filter
b8.resample_filter b8.conv0.weight b8.conv0.bias b8.conv0.resample_filter b8.conv1.weight b8.conv1.bias
b8.conv1.resample_filter b8.skip.weight b8.skip.resample_filter b4.conv.weight b4.conv.bias
b4.conv.resample_filter b4.fc.weight b4.fc.bias b4.out.weight b4.out.bias
""".split()


def test_state_dict_names_match_official():
    G = tiny_g(32)
    assert list(G.state_dict()) == OFFICIAL_G32_NAMES   # same names, same order as stylegan2-ada-pytorch
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=128, channel_max=8)
    assert list(D.state_dict()) == OFFICIAL_D32_NAMES
    sd = G.state_dict()
    assert sd["synthesis.b8.resample_filter"].shape == (4, 4)
    assert sd["synthesis.b8.conv0.noise_const"].shape == (8, 8) and sd["synthesis.b4.const"].shape == (16, 4, 4)
    assert G.synthesis.b8.torgb.weight.shape == (3, 16, 1, 1)


def test_init_and_runtime_gains():
    G = Generator(z_dim=64, c_dim=0, w_dim=32, img_resolution=8, img_channels=3, synthesis_kwargs=dict(channel_base=128))
    fc = G.mapping.fc0
    assert fc.weight_gain == pytest.approx(0.01 / math.sqrt(64)) and fc.bias_gain == 0.01
    assert fc.weight.std().item() == pytest.approx(100, rel=0.1)      # stored unscaled: randn / lr_mul
    assert torch.all(G.synthesis.b8.conv0.affine.bias == 1)             # affine bias_init = 1
    assert G.synthesis.b8.torgb.weight_gain == pytest.approx(1 / math.sqrt(16))
    assert G.synthesis.b8.conv0.noise_strength.item() == 0
    assert torch.allclose(G.synthesis.b8.resample_filter,
                          torch.tensor([1., 3, 3, 1]).outer(torch.tensor([1., 3, 3, 1])) / 64)


# ----------------------------------------------------------------------------- behaviour

def test_noise_modes_and_truncation():
    G = tiny_g(16)
    z = torch.randn(3, 16)
    with torch.no_grad():
        a, b = G(z, None, noise_mode="const"), G(z, None, noise_mode="const")
        assert torch.equal(a, b)
        assert not torch.equal(G(z, None, noise_mode="random"), G(z, None, noise_mode="random"))
        assert not torch.equal(a, G(z, None, noise_mode="none"))
        ws = G.mapping(z, None, truncation_psi=0)
        assert torch.allclose(ws, G.mapping.w_avg.expand_as(ws))
        ws_cut = G.mapping(z, None, truncation_psi=0, truncation_cutoff=2)
        assert torch.allclose(ws_cut[:, :2], G.mapping.w_avg.expand(3, 2, -1))
        assert torch.equal(ws_cut[:, 2:], G.mapping(z, None)[:, 2:])
        # fused (inference) and non-fused (training) modulation agree
        ws = G.mapping(z, None)
        assert torch.allclose(G.synthesis(ws, noise_mode="const", fused_modconv=False), a, atol=1e-4)
    assert torch.equal(G.synthesis(ws, noise_mode="const"), a)      # autograd path == in-place inference path
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, None, noise_mode="fixed")


def test_half_precision_blocks_stay_fp32_on_cpu():
    G16 = tiny_g(16, num_fp16_res=2, conv_clamp=256)
    G32 = tiny_g(16, conv_clamp=256)
    ws = torch.randn(2, G16.num_ws, 16)
    with torch.no_grad():
        assert torch.equal(G16.synthesis(ws, noise_mode="const"), G32.synthesis(ws, noise_mode="const"))


def test_training_mode_grads_and_w_avg():
    G, D = tiny_g(16).train(), Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=16)
    before = G.mapping.w_avg.clone()
    logits = D(G(torch.randn(4, 16), None))
    assert logits.shape == (4, 1)
    logits.sum().backward()
    assert G.synthesis.b4.const.grad is not None and G.mapping.fc0.weight.grad is not None
    assert not torch.equal(before, G.mapping.w_avg)


def test_conditional_networks():
    G = Generator(z_dim=8, c_dim=5, w_dim=8, img_resolution=8, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    D = Discriminator(c_dim=5, img_resolution=8, img_channels=3, channel_base=64, channel_max=8,
                      mapping_kwargs=dict(num_layers=2))
    assert "mapping.embed.weight" in G.state_dict() and "mapping.embed.weight" in D.state_dict()
    c = torch.nn.functional.one_hot(torch.tensor([0, 4]), 5).float()
    assert D(G(torch.randn(2, 8), c), c).shape == (2, 1)


def test_demodulated_conv_has_unit_variance_per_channel():
    torch.manual_seed(1)
    x = torch.randn(16, 64, 20, 20)
    weight = torch.randn(32, 64, 3, 3)
    styles = torch.randn(16, 64).exp()       # strongly varying modulation
    for fused in (True, False):
        y = ops.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused)[:, :, 1:-1, 1:-1]
        var = y.var(dim=(0, 2, 3))
        assert torch.all((var > 0.8) & (var < 1.2)), var
    y_up = ops.modulated_conv2d(x, weight, styles, up=2, padding=1, resample_filter=ops.setup_filter())
    assert y_up.shape == (16, 32, 40, 40)


def test_fir_resampling_preserves_constants():
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.sum().item() == pytest.approx(1)
    x = torch.full((1, 2, 8, 8), 0.7)
    up = ops.upsample2d(x, f)
    assert up.shape == (1, 2, 16, 16)
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 0.7))
    down = ops.downsample2d(x, f)
    assert down.shape == (1, 2, 4, 4) and torch.allclose(down[:, :, 1:-1, 1:-1], torch.full((1, 2, 2, 2), 0.7))
    # an up+down conv of a constant with a constant kernel is constant inside, like a plain conv
    w = torch.ones(1, 2, 3, 3) / 18
    y = ops.conv2d_resample(x, w, f=f, up=2, padding=1)
    assert torch.allclose(y[:, :, 3:-3, 3:-3], torch.full_like(y[:, :, 3:-3, 3:-3], 0.7), atol=1e-6)


def test_bias_act_gain_and_clamp():
    x = torch.tensor([[-2.0, 1.0, 500.0]])
    y = ops.bias_act(x, torch.tensor([0.0, 0.0, 0.0]), act="lrelu", clamp=256)
    assert torch.allclose(y, torch.tensor([[-0.4 * math.sqrt(2), math.sqrt(2), 256.0]]))
    assert torch.equal(ops.bias_act(x, act="linear"), x)
    # the in-place inference path never touches the caller's tensor and matches the autograd path
    x = torch.randn(2, 5, 3, 3, requires_grad=True)
    b = torch.randn(5)
    with torch.no_grad():
        x0 = x.detach().clone()
        fast = ops.bias_act(x.detach(), b, act="lrelu", gain=1.7, clamp=0.5)
        fast_nob = ops.bias_act(x.detach(), None, act="lrelu", clamp=0.5)
        assert torch.equal(x.detach(), x0)
    assert torch.equal(fast, ops.bias_act(x, b, act="lrelu", gain=1.7, clamp=0.5))
    assert torch.equal(fast_nob, ops.bias_act(x, None, act="lrelu", clamp=0.5))


# ----------------------------------------------------------------------------- official pickles

MODULE_SRC_TEMPLATE = "open({marker!r}, 'w').write('pwned')\nimport torch\nclass Generator: pass\n"


@pytest.fixture
def fake_official(monkeypatch):
    """torch_utils.persistence + dnnlib.util registered in sys.modules for this test only."""
    tu, per = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    dn, du = types.ModuleType("dnnlib"), types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):   # what the real one does is exec(meta['module_src'])
        raise RuntimeError("the loader must never call the pickled persistence function")
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    per._reconstruct_persistent_obj = _reconstruct_persistent_obj
    EasyDict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    du.EasyDict = EasyDict
    tu.persistence, dn.util = per, du
    for name, mod in [("torch_utils", tu), ("torch_utils.persistence", per), ("dnnlib", dn), ("dnnlib.util", du)]:
        monkeypatch.setitem(sys.modules, name, mod)

    class Persistent:
        def __init__(self, meta):
            self.meta = meta

        def __reduce__(self):
            return (per._reconstruct_persistent_obj, (self.meta,))

    def wrap(module, init_kwargs=None, module_src="class X: pass\n"):
        """Mimic persistence.persistent_class.__reduce__: state = the module __dict__."""
        state = {
            "training": False,
            "_parameters": collections.OrderedDict(
                (k, None if v is None else torch.nn.Parameter(v.detach().clone(), requires_grad=False))
                for k, v in module._parameters.items()),
            "_buffers": collections.OrderedDict((k, v.clone()) for k, v in module._buffers.items()),
            "_non_persistent_buffers_set": set(),
            "_forward_hooks": collections.OrderedDict(),
            "_modules": collections.OrderedDict((k, wrap(m, module_src=module_src)) for k, m in module._modules.items()),
            "_init_args": (),
            "_init_kwargs": EasyDict(init_kwargs or {}),
        }
        if hasattr(module, "weight_gain"):
            state["weight_gain"] = np.float64(module.weight_gain)
        meta = dict(type="class", version=6, module_src=module_src, class_name=type(module).__name__, state=state)
        return Persistent(meta)

    def make_pkl(G, D=None, protocol=3, module_src="class X: pass\n", extra=None):
        kw = G.init_kwargs
        g_kwargs = dict(kw, mapping_kwargs=EasyDict(kw["mapping_kwargs"]), synthesis_kwargs=EasyDict(kw["synthesis_kwargs"]))
        data = {"G": wrap(G, g_kwargs, module_src), "G_ema": wrap(G, g_kwargs, module_src),
                "D": wrap(D, D.init_kwargs, module_src) if D is not None else None, "augment_pipe": None,
                "training_set_kwargs": EasyDict(path="ffhq.zip", resolution=G.img_resolution)}
        data.update(extra or {})
        return pickle.dumps(data, protocol=protocol)

    return types.SimpleNamespace(make_pkl=make_pkl, EasyDict=EasyDict)


def assert_same_net(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("protocol", [3, 4])
def test_official_pickle_round_trip(fake_official, tmp_path, protocol):
    G = tiny_g(32, num_fp16_res=2, conv_clamp=256)
    D = build_discriminator(32, channel_base=256, channel_max=16, num_fp16_res=2, mbstd_group_size=2)
    marker = tmp_path / "pwned"
    blob = fake_official.make_pkl(G, D, protocol, module_src=MODULE_SRC_TEMPLATE.format(marker=str(marker)))
    path = tmp_path / "net.pkl"
    path.write_bytes(blob)
    G2 = load_official(path)
    assert not marker.exists()          # module_src was never executed
    assert_same_net(G, G2)
    assert G2.init_kwargs["synthesis_kwargs"]["num_fp16_res"] == 0 and G2.synthesis.b32.conv1.conv_clamp == 256
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(G(z, None, noise_mode="const"), G2(z, None, noise_mode="const"))
    assert load_official(io.BytesIO(blob), force_fp32=False).init_kwargs["synthesis_kwargs"]["num_fp16_res"] == 2
    D2 = load_official(path, which="D")
    assert_same_net(D, D2)
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(D.eval()(img), D2(img))
    with pytest.raises(OfficialWeightsError, match="no network 'G_ema'"):
        load_official(io.BytesIO(fake_official.make_pkl(G, extra={"G_ema": None})))


def test_stylegan3_repo_layout_kwargs(fake_official):
    """stylegan3's networks_stylegan2 keeps synthesis kwargs at the Generator's top level."""
    G = tiny_g(16)
    kw = dict(G.init_kwargs)
    syn = kw.pop("synthesis_kwargs")
    G.init_kwargs = dict(kw, **syn, fused_modconv_default="inference_only", synthesis_kwargs={})
    G2 = load_official(io.BytesIO(fake_official.make_pkl(G)))
    assert_same_net(G, G2)


def test_official_elu_mapping_and_separable_long_filter(fake_official):
    """Official setup_filter keeps filters of >= 8 taps 1-D (separable); ours are 2-D outer
    products. Official mapping nets may use elu/selu/softplus."""
    taps = [1, 2, 4, 6, 6, 4, 2, 1]
    torch.manual_seed(0)
    G = Generator(img_resolution=16, synthesis_kwargs=dict(channel_base=256, channel_max=16, resample_filter=taps),
                  **dict(TINY, mapping_kwargs=dict(TINY.get("mapping_kwargs", {}), activation="elu"))).eval()
    official = copy.deepcopy(G)
    f1 = torch.tensor(taps, dtype=torch.float32) / sum(taps)
    for m in official.modules():
        if "resample_filter" in m._buffers and m._buffers["resample_filter"].shape == (8, 8):
            m._buffers["resample_filter"] = f1.clone()   # (conv1 layers keep the default [1,3,3,1])
    G2 = load_official(io.BytesIO(fake_official.make_pkl(official)))
    z = torch.randn(2, TINY["z_dim"])
    with torch.no_grad():
        ref, got = G(z, None, noise_mode="const"), G2(z, None, noise_mode="const")
    assert torch.allclose(got, ref, rtol=0, atol=1e-6) and G2.mapping.fc0.activation == "elu"


class _Shell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickles_are_refused(fake_official, tmp_path):
    marker = tmp_path / "pwned"
    for blob in (pickle.dumps(_Shell(marker)),
                 fake_official.make_pkl(tiny_g(8), extra={"augment_pipe": _Shell(marker)}),
                 pickle.dumps([print])):
        with pytest.raises(UnsafeOfficialPickleError) as info:
            load_official(io.BytesIO(blob))
        assert isinstance(info.value, UnsafePickleError) and isinstance(info.value, StylecodecError)
        assert "allow-list" in str(info.value)
    assert not marker.exists()
    with pytest.raises(OfficialWeightsError, match="cannot read"):
        load_official(io.BytesIO(fake_official.make_pkl(tiny_g(8))[:-40]))   # truncated
    with pytest.raises(OfficialWeightsError, match="no such file"):
        load_official(tmp_path / "missing.pkl")


def test_checkpoint_and_state_dict_loading(tmp_path):
    G = tiny_g(16, conv_clamp=None)
    save_checkpoint(G, tmp_path / "g.pt")
    ck = torch.load(tmp_path / "g.pt", weights_only=True)
    assert ck["kind"] == "stylegan2-generator" and ck["init_kwargs"]["img_resolution"] == 16
    for G2 in (load_checkpoint(tmp_path / "g.pt"), load_official(tmp_path / "g.pt")):
        assert_same_net(G, G2)
    torch.save(G.state_dict(), tmp_path / "sd.pt")            # bare state dict: shapes inferred
    G3 = load_official(tmp_path / "sd.pt")
    assert_same_net(G, G3)
    ws = torch.randn(1, G.num_ws, 16)
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws, noise_mode="const"), G3.synthesis(ws, noise_mode="const"))
    D = build_discriminator(16, channel_base=128, channel_max=8)
    save_checkpoint(D, tmp_path / "d.pt")
    assert_same_net(D, load_checkpoint(tmp_path / "d.pt"))
    with pytest.raises(OfficialWeightsError):
        load_checkpoint(tmp_path / "sd.pt")


# ----------------------------------------------------------------------------- CLI

def test_convert_pkl_command(fake_official, tmp_path, capsys):
    from stylecodec.commands import convert_pkl
    G = tiny_g(16)
    (tmp_path / "in.pkl").write_bytes(fake_official.make_pkl(G))
    parser = argparse.ArgumentParser()
    convert_pkl.add_arguments(parser)
    assert convert_pkl.run(parser.parse_args([str(tmp_path / "in.pkl"), str(tmp_path / "out.pt")])) == 0
    assert "Generator 16px" in capsys.readouterr().out
    assert_same_net(G, load_checkpoint(tmp_path / "out.pt"))


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m, _ in
                        __import__("stylecodec.cli", fromlist=["COMMANDS"]).COMMANDS.values()),
                    reason="not every CLI command module exists yet")
def test_convert_pkl_via_cli(fake_official, tmp_path, capsys):
    from stylecodec.cli import main
    G = tiny_g(8)
    (tmp_path / "in.pkl").write_bytes(fake_official.make_pkl(G))
    assert main(["convert-pkl", str(tmp_path / "in.pkl"), str(tmp_path / "out.pt"), "--which", "G"]) == 0
    assert_same_net(G, load_checkpoint(tmp_path / "out.pt"))
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(_Shell(tmp_path / "pwned")))
    assert main(["convert-pkl", str(tmp_path / "bad.pkl"), str(tmp_path / "x.pt")]) == 1
    assert "allow-list" in capsys.readouterr().err and not (tmp_path / "pwned").exists()


def test_default_build_helpers():
    G = build_generator(64, channel_base=512, channel_max=16, z_dim=16, w_dim=16, mapping_layers=2)
    assert G.num_ws == 10 and G.synthesis.b64.conv1.conv_clamp == 256
