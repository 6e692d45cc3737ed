"""Codec mechanics on a tiny RANDOM-initialised model (64², n = 10; built here, never shipped):
round trips at every prefix, layer cuts, rate control, model checks, CLI, determinism."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stylecodec.bitstream import HEADER_BYTES, BitstreamError, extract, unpack
from stylecodec.cli import main
from stylecodec.codec import Codec
from stylecodec.images import ImageReadError
from stylecodec.rate import RateRequest
from stylecodec.files import atomic_torch_save
from stylecodec.model import StyleCodecModel, tiny_config
from stylecodec.zoo import (ModelError, ModelNotFoundError, load, model_path, read_checkpoint,
                            save_model)

ROOT = Path(__file__).resolve().parent.parent


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.RandomState(seed)
    return [(rng.rand(72 + 8 * i, 80, 3) * 255).astype(np.uint8) for i in range(n)]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(StyleCodecModel(tiny_config()), path, {"note": "random weights, mechanics tests only"})
    return path


@pytest.fixture(scope="module")
def codec(model_file) -> Codec:
    torch.set_num_threads(1)
    return Codec.from_pretrained(model_file)


@pytest.fixture(scope="module")
def stream(codec) -> bytes:
    return codec.compress(_images(1)[0], quality=3)


def test_round_trip_every_prefix(codec, stream):
    stats: list = []
    ys = codec.encode_latents(codec.preprocess(_images(1)[0]))
    assert codec.compress_latents(ys, 3, stats)[0] == stream
    header, payloads = unpack(stream)
    assert (header.resolution, header.quality, header.fingerprint, len(payloads)) == (64, 3, codec.key.tag, 3)
    assert header.fingerprint == codec.fingerprint >> 8
    ws_all = []
    for k in (1, 2, 3):
        y_hat, received = codec.decode_y(stream, k)
        assert received == k
        for l in range(k):                                  # received layers: exactly what was coded
            assert torch.equal(y_hat[l][0], stats[0]["y_hat"][l])
        ws = codec.decode_latents(stream, k)
        assert ws.shape == (1, 10, 16) and torch.isfinite(ws).all()
        ws_all.append(ws)
    assert not torch.equal(ws_all[0], ws_all[2])
    img = codec.decompress(stream, "basic")
    assert img.size == (64, 64) and img.mode == "RGB"


def test_basic_layer_from_extract_and_from_cut(codec, stream):
    _, payloads = unpack(stream)
    cut = stream[:HEADER_BYTES + 2 + len(payloads[0])]     # physically cut after basic
    ex = extract(stream, 1)
    assert cut[:2] == ex[:2] and cut[4:] == ex[3:]         # the declared count and the basic length differ
    a, b, c = codec.decode_latents(cut), codec.decode_latents(ex), codec.decode_latents(stream, "basic")
    assert torch.equal(a, b) and torch.equal(a, c)
    assert np.array_equal(codec.decompress(cut, output="array"), codec.decompress(ex, output="array"))


def test_quality_orders_rate_and_bpp_picks_the_highest_fit(codec):
    imgs = _images(3, seed=1)
    ys = [codec.encode_latents(codec.preprocess(im)) for im in imgs]
    sizes = np.array([[len(codec.compress_latents(y, q)[0]) for q in codec.quality_range] for y in ys])
    mean = sizes.mean(0)
    assert all(a <= b for a, b in zip(mean, mean[1:])), mean
    pixels = codec.resolution ** 2
    row = sizes[0]
    target = 8 * (row[-1] - 1) / pixels                     # the top quality cannot fit
    fits = [q for q in codec.quality_range if 8 * row[q] / pixels <= target]
    data = codec.compress(imgs[0], bpp=target)
    assert unpack(data)[0].quality == max(fits) and 8 * len(data) / pixels <= target
    with pytest.raises(Exception, match=r"at the lowest quality this image takes \d"):
        codec.compress(imgs[0], bpp=8 * (row.min() - 1) / pixels)


def test_basic_budget_picks_the_highest_quality_whose_basic_layer_fits(codec, model_file, tmp_path):
    img = _images(1, seed=2)[0]
    ys = codec.encode_latents(codec.preprocess(img))
    streams = [codec.compress_latents(ys, q)[0] for q in codec.quality_range]
    pixels = codec.resolution ** 2
    basic = np.array([len(extract(s, 1)) for s in streams])
    whole = np.array([len(s) for s in streams])
    assert basic.min() < basic.max(), basic                 # else the budget below cannot separate qualities
    budget = 8 * (basic.max() - 1) / pixels                 # the quality with the largest basic layer cannot fit
    want = max(q for q in codec.quality_range if 8 * basic[q] <= budget * pixels)
    data = codec.compress(img, basic_bpp=budget)
    assert unpack(data)[0].quality == want and data == streams[want]
    assert 8 * len(extract(data, 1)) / pixels <= budget
    # both budgets: the whole-file one too (here it is what binds)
    file_budget = 8 * whole[want] / pixels - 1e-9
    both = [q for q in codec.quality_range if 8 * basic[q] <= budget * pixels and whole[q] < whole[want]]
    assert both, (basic, whole)
    data = codec.compress(img, bpp=file_budget, basic_bpp=budget)
    assert unpack(data)[0].quality == max(both)
    with pytest.raises(Exception, match=r"no quality fits basic layer <= .* basic layer 0\.\d+ bpp \(\d+ bytes\)"):
        codec.compress(img, basic_bpp=8 * (basic.min() - 1) / pixels)
    with pytest.raises(Exception, match="not both"):
        codec.compress(img, quality=1, basic_bpp=budget)
    # the CLI: --basic-bpp fits, --quality with it or a non-positive budget is a usage error (exit 2)
    src = tmp_path / "face.png"
    from PIL import Image
    Image.fromarray(img).save(src)
    out = tmp_path / "b.sfc"
    assert main(["compress", str(src), "-o", str(out), "--basic-bpp", repr(float(budget)), "--model", str(model_file),
                 "--align", "off"]) == 0
    assert unpack(out.read_bytes())[0].quality == want
    for bad in (["--quality", "1", "--basic-bpp", "0.5"], ["--basic-bpp", "0"], ["--basic-bpp", "-1"]):
        with pytest.raises(SystemExit) as e:
            main(["compress", str(src), "-o", str(tmp_path / "c.sfc"), *bad])
        assert e.value.code == 2


def _with_budget(model_file: Path, path: Path, budget) -> Codec:
    """The model of ``model_file`` with config ``rate_budget`` = budget, saved to ``path``."""
    ck = read_checkpoint(model_file)
    ck["config"]["rate_budget"] = budget
    atomic_torch_save(ck, path)
    return Codec.from_pretrained(path)


def test_default_rate_is_the_models_budget(codec, model_file, tmp_path, capsys):
    """No quality and no budget: the model's rate_budget, as if given (the highest quality within it);
    a face that no quality fits gets the lowest quality, not an error (the CLI warns, compress-dir
    marks it), while the same budget given explicitly is an error. A model without a budget: the
    highest quality. The budget is config, not weights: same fingerprint, same streams."""
    img = _images(1, seed=4)[0]
    ys = codec.encode_latents(codec.preprocess(img))
    streams = [codec.compress_latents(ys, q)[0] for q in codec.quality_range]
    whole = [len(s) for s in streams]
    pixels = codec.resolution ** 2
    assert codec.default_budget == (None, None) and codec.compress(img) == streams[-1]
    bpp = 8 * (whole[-1] - 1) / pixels                      # the top quality cannot fit, a lower one can
    want = max(q for q in codec.quality_range if whole[q] < whole[-1])
    budgeted = _with_budget(model_file, tmp_path / "budget.pt", {"bpp": bpp, "basic_bpp": None})
    assert budgeted.fingerprint == codec.fingerprint and budgeted.default_budget == (bpp, None)
    assert budgeted.compress(img) == streams[want] == budgeted.compress(img, bpp=bpp)
    assert budgeted.compress(img, quality=codec.quality_range[-1]) == streams[-1]   # a given quality wins
    assert budgeted.resolve_rate() == RateRequest(None, bpp, None, strict=False)
    assert codec.resolve_rate() == RateRequest(codec.quality_range[-1], None, None)
    # no quality fits: the lowest quality by default, an error when asked for explicitly
    tiny = 8 * (min(len(extract(s, 1)) for s in streams) - 1) / pixels
    strict = _with_budget(model_file, tmp_path / "tiny.pt", {"bpp": None, "basic_bpp": tiny})
    assert strict.compress(img) == streams[0]
    assert strict.compress_within(img, None, tiny) == (streams[0], False)
    with pytest.raises(Exception, match="no quality fits basic layer"):
        strict.compress(img, basic_bpp=tiny)
    from PIL import Image
    src = tmp_path / "faces" / "a.png"
    src.parent.mkdir()
    Image.fromarray(img).save(src)
    capsys.readouterr()
    out = tmp_path / "a.sfc"
    assert main(["compress", str(src), "-o", str(out), "--model", str(tmp_path / "tiny.pt"), "--align", "off"]) == 0
    assert out.read_bytes() == streams[0]
    assert "warning: no quality fits the model's rate budget (basic layer <= " in capsys.readouterr().err
    assert main(["compress", str(src), "-o", str(out), "--model", str(tmp_path / "budget.pt"), "--align", "off"]) == 0
    assert out.read_bytes() == streams[want] and "warning" not in capsys.readouterr().err
    # compress-dir: the same default, the miss marked in the manifest and counted; a rerun keeps it
    from stylecodec.batch import compress_dir, read_manifest
    for _ in range(2):
        c = compress_dir(strict, src.parent, tmp_path / "out", progress=False)
        entry = read_manifest(tmp_path / "out")["a.png"]
        assert c["over_budget"] == 1 and entry["within_budget"] is False and entry["quality"] == 0
    assert entry["status"] == "skipped" and (tmp_path / "out" / "a.png.sfc").read_bytes() == streams[0]
    c = compress_dir(budgeted, src.parent, tmp_path / "out2", progress=False)
    assert c["over_budget"] == 0 and read_manifest(tmp_path / "out2")["a.png"]["within_budget"] is True


@pytest.mark.parametrize("bad", [{"bpp": 0.01}, {"bpp": -1.0, "basic_bpp": None}, {"bpp": "0.01", "basic_bpp": None},
                                 {"bpp": True, "basic_bpp": None}, [0.01, 0.003]])
def test_rate_budget_config_is_checked(bad):
    from stylecodec.model import make_config
    with pytest.raises(ValueError, match="rate_budget"):
        make_config({"rate_budget": bad})
    assert make_config({"rate_budget": {"bpp": 1, "basic_bpp": None}})["rate_budget"] == {"bpp": 1.0, "basic_bpp": None}


def test_wrong_model_and_bad_header(codec, stream, tmp_path):
    torch.manual_seed(1)
    other = Codec(StyleCodecModel(tiny_config()))
    assert other.fingerprint != codec.fingerprint
    with pytest.raises(BitstreamError, match="wrong model"):
        other.decompress(stream)
    for bad in (stream[:5], stream[:-1], stream + b"\0", b"SFC\x20" + stream[4:]):
        with pytest.raises(BitstreamError):
            codec.decode_latents(bad)
    with pytest.raises(ImageReadError):
        codec.compress(b"not an image")


def test_cli_exit_codes(model_file, stream, tmp_path, capsys):
    img_path = tmp_path / "face.png"
    from PIL import Image
    Image.fromarray(_images(1)[0]).save(img_path)
    out = tmp_path / "face.sfc"
    assert main(["compress", str(img_path), "-o", str(out), "--quality", "3", "--model", str(model_file)]) == 0
    assert out.read_bytes() == stream
    assert main(["inspect", str(out)]) == 0
    assert "quality 3" in capsys.readouterr().out
    assert main(["extract", str(out), "-o", str(tmp_path / "b.sfc"), "--layers", "basic"]) == 0
    assert (tmp_path / "b.sfc").read_bytes() == extract(stream, 1)
    assert main(["decompress", str(out), "-o", str(tmp_path / "f.png"), "--model", str(model_file)]) == 0
    assert Image.open(tmp_path / "f.png").size == (64, 64)
    with pytest.raises(SystemExit) as e:
        main(["compress", str(img_path), "-o", str(out), "--quality", "1", "--bpp", "0.1"])
    assert e.value.code == 2
    (tmp_path / "bad.sfc").write_bytes(stream[:-3])         # cut inside the last layer: its CRC
    (tmp_path / "cut.sfc").write_bytes(stream[:HEADER_BYTES + 4])   # cut inside the basic layer
    (tmp_path / "bad.png").write_bytes(b"garbage")
    capsys.readouterr()
    for argv in (["decompress", str(tmp_path / "bad.sfc"), "-o", str(tmp_path / "x.png"), "--model", str(model_file)],
                 ["compress", str(tmp_path / "bad.png"), "-o", str(tmp_path / "x.sfc"), "--model", str(model_file)],
                 ["compress", str(img_path), "-o", str(tmp_path / "x.sfc"), "--model", str(tmp_path / "none.pt")]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.sfc").exists()
    r = subprocess.run([sys.executable, "-m", "stylecodec.cli", "inspect", str(tmp_path / "cut.sfc")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and "truncated layer 0" in r.stderr and "Traceback" not in r.stderr
    assert main(["inspect", str(tmp_path / "bad.sfc")]) == 0                      # no model: structure only
    assert "CRCs not checked" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "bad.sfc"), "--model", str(model_file)]) == 1
    err = capsys.readouterr().err
    assert "CRC mismatch in layer 2 (enhanced)" in err and err.count("\n") == 1
    assert main(["inspect", str(out), "--model", str(model_file)]) == 0
    assert "CRCs checked" in capsys.readouterr().out


_CHILD = """
import hashlib, sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
from stylecodec.codec import Codec
sys.path.insert(0, sys.argv[3])
from test_codec import _determinism_case
print(_determinism_case(Codec.from_pretrained(sys.argv[1])))
"""


def _determinism_case(codec: Codec) -> str:
    """Streams (image at quality 3, a batch of 3 W+ at quality 5) and a hash of their decoded Ŵ+."""
    rng = np.random.RandomState(0)
    img = (rng.rand(72, 80, 3) * 255).astype(np.uint8)
    ws = torch.from_numpy(rng.randn(3, 10, 16).astype(np.float32))
    streams = [codec.compress(img, quality=3)] + codec.compress_ws(ws, 5)
    lat = b"".join(codec.decode_latents(s).numpy().tobytes() for s in streams)
    return b"".join(streams).hex() + " " + hashlib.sha256(lat).hexdigest()


def test_determinism_threads_and_batch(codec, model_file):
    ws = torch.from_numpy(np.random.RandomState(5).randn(3, 10, 16).astype(np.float32))
    batch = codec.compress_ws(ws, 5)                      # LSET contexts of batch 3 vs batch 1
    assert batch == [codec.compress_ws(ws[i:i + 1], 5)[0] for i in range(3)]
    ys = [y.double() for y in codec.model.transforms.analyse(ws)]
    assert codec.compress_latents(ys, 5) == [codec.compress_latents([y[i:i + 1] for y in ys], 5)[0] for i in range(3)]
    child = "2" if torch.get_num_threads() == 1 else "1"  # the child decodes with another thread count than ours
    r = subprocess.run([sys.executable, "-c", _CHILD, str(model_file), child, str(Path(__file__).parent)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == _determinism_case(codec)


def test_decoding_twice_is_identical(codec, stream):
    a, b = codec.decompress(stream, output="array"), codec.decompress(stream, output="array")
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3) and np.array_equal(a, b)


def test_checkpoint_round_trip_and_errors(model_file, codec, tmp_path, monkeypatch):
    model = codec.model
    sd = model.state_dict()
    assert not any("cdf" in k.lower() or k.endswith(("_offset", "_cdf_length")) for k in sd)
    fresh = StyleCodecModel(model.config)
    fresh.load_state_dict(sd, strict=True)
    assert Codec(fresh).fingerprint == codec.fingerprint
    fp16 = tmp_path / "half.pt"
    fp = save_model(model, fp16, {"run": "x"}, storage="fp16")
    assert fp16.stat().st_size < 0.75 * model_file.stat().st_size and load(fp16).fingerprint == fp
    assert load(fp16).meta == {"run": "x"}
    (tmp_path / "garbage.pt").write_bytes(b"\x00" * 100)
    (tmp_path / "cut.pt").write_bytes(model_file.read_bytes()[:5000])
    torch.save({"format": "other"}, tmp_path / "other.pt")
    for name in ("garbage.pt", "cut.pt", "other.pt"):
        with pytest.raises(ModelError):
            load(tmp_path / name)
    monkeypatch.setattr("stylecodec.zoo.search_dirs", lambda: [tmp_path / "empty"])
    with pytest.raises(ModelNotFoundError, match="default model has not been trained/shipped yet"):
        model_path("default")
    with pytest.raises(ModelNotFoundError, match="unknown model name"):
        model_path("nope")
    assert os.fspath(model_path(model_file)) == os.fspath(model_file)


def test_forward_contract():
    torch.manual_seed(0)
    model = StyleCodecModel(tiny_config())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    out = model(x, torch.tensor([0, 5]), n_layers=2, quant="ste")
    assert [y.shape for y in out["y"]] == [(2, 8), (2, 8)] and len(out["likelihoods"]) == 2
    assert set(out["x_hat"]) == {1, 2} and out["x_hat"][1].shape == (2, 3, 64, 64)
    assert out["ws_hat"][2].shape == (2, 10, 16)
    bits = StyleCodecModel.bits(out)
    assert bits.shape == (2, 2) and (bits[1] > bits[0]).all()          # quality 5 costs more than 0
    (bits.sum() + out["x_hat"][1].square().mean()).backward()
    assert model.gain.grad is not None and model.E.styles[0].linear.weight.grad is not None


# ---------------------------------------------------------------- cross-machine golden

def _integer_model() -> StyleCodecModel:
    """The tiny model with weights drawn as integers (torch.randint, then exact scalings), so every
    machine builds it bit for bit (unlike randn/kaiming init, whose vectorised paths may differ)."""
    torch.manual_seed(0)
    model = StyleCodecModel(tiny_config())
    g = torch.Generator().manual_seed(2026)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gain" in name:                     # the quality gains keep their deterministic init
                continue
            u = torch.randint(-64, 65, p.shape, generator=g).to(p.dtype) / 64
            fan_in = p[0].numel() if p.ndim >= 2 else 0
            p.copy_(u * (1 / 2 ** (max(fan_in, 1).bit_length() / 2) if fan_in else 0.125))
    return model.eval()


def test_golden_streams_are_the_same_on_every_machine():
    """Fixed model + fixed latents -> these exact bytes, and back. Written on the development box;
    CI (another machine) re-derives them, so this checks cross-machine determinism of the LSET's
    coding tables and of the range coder, and catches any unannounced change of the format."""
    codec = Codec(_integer_model())
    g = torch.Generator().manual_seed(7)
    ys = [torch.randint(-300, 301, (3, d), generator=g).double() / 100 for d in codec.model.latent_dims]
    digests = {}
    for q in (0, codec.quality_range.stop - 1):
        stats: list = []
        streams = codec.compress_latents(ys, q, stats)
        for i, data in enumerate(streams):
            y_hat, k = codec.decode_y(data)
            assert k == 3 and all(torch.equal(a[0], b) for a, b in zip(y_hat, stats[i]["y_hat"]))
        digests[q] = hashlib.sha256(b"".join(streams)).hexdigest()[:16]
        digests[f"len{q}"] = [len(s) for s in streams]
    assert codec.fingerprint == GOLDEN["fingerprint"]
    assert digests == GOLDEN["streams"]


# Written with `python -m pytest` on the development machine (x86_64, torch 2.14.1, constriction 0.5.0), bitstream
# version 2; 1 and 2 threads alike (version 1's CompressAI rANS streams were 10 bytes longer each).
GOLDEN = {"fingerprint": 4035,
          "streams": {0: "60dcbf236fc43a47", "len0": [15, 15, 15], 5: "24e219ae2024018e", "len5": [24, 27, 23]}}
