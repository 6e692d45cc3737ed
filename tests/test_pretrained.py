"""The weights shipped in pretrained/: each file the model card lists exists, has the sha256 the
card states, loads with the safe loaders and does what the card says (no training here)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from stylecodec.zoo import REGISTRY

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"
CARD = PRETRAINED / "MODEL_CARD.md"


def _card_files() -> dict[str, str]:
    """{file name: sha256} from the card's lines ``- file: `NAME` ... sha256 `HEX` ``."""
    if not CARD.is_file():
        return {}
    return dict(re.findall(r"file: `([^`]+)`.*?sha256 `([0-9a-f]{64})`", CARD.read_text(), re.S))


def test_every_shipped_file_is_in_the_card_and_matches_it():
    files = _card_files()
    shipped = sorted(p.name for p in PRETRAINED.glob("*.pt")) if PRETRAINED.is_dir() else []
    assert sorted(files) == shipped, "pretrained/*.pt and the files listed in pretrained/MODEL_CARD.md differ"
    for name, digest in files.items():
        assert hashlib.sha256((PRETRAINED / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.skipif("prior_cpu64.pt" not in _card_files(), reason="no shipped 64² prior")
def test_shipped_cpu64_prior_generates_varied_faces():
    from stylecodec.gan import load_checkpoint

    G = load_checkpoint(PRETRAINED / "prior_cpu64.pt")
    assert G.img_resolution == 64 and G.num_ws == 10
    z = torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = G(z, None, noise_mode="const")
        again = G(z, None, noise_mode="const")
    assert img.shape == (8, 3, 64, 64) and torch.isfinite(img).all() and torch.equal(img, again)
    assert img.std() > 0.2                                        # not a flat image
    assert (img[0] - img[1]).abs().mean() > 0.05                  # different z, different faces
    assert img.mean(0).std() > 0.1                                # a face-like mean layout, not noise


SAMPLE = PRETRAINED.parent / "samples" / "astronaut_eileen_collins.png"
GOLDEN_STREAM = Path(__file__).resolve().parent / "data" / "default_sample.sfc"


@pytest.fixture(scope="module")
def default_codec():
    if "default.pt" not in _card_files():
        pytest.skip("no shipped default codec (pretrained/default.pt)")
    from stylecodec.codec import Codec

    torch.set_num_threads(1)
    return Codec.from_pretrained("default")


def test_default_codec_meets_the_rate_and_scales(default_codec):
    """The shipped default on the demo's sample face: --bpp 0.01 fits (<= 81 bytes at 256²), so does
    the default (the model's budget, basic layer <= 24 bytes too), the basic layer alone is a
    valid stream, every prefix decodes to a face-sized image, analysis reads only the basic layer."""
    from PIL import Image

    from stylecodec.bitstream import extract

    codec = default_codec
    face = Image.open(SAMPLE)
    data = codec.compress(face, bpp=0.01)
    assert 8 * len(data) / codec.resolution ** 2 <= 0.01
    # without options: the model's budget, file <= 0.01 bpp and basic layer alone <= 0.003 bpp
    assert codec.default_budget == (0.01, 0.003)
    default = codec.compress(face)
    assert len(default) <= 81 and len(extract(default, 1)) <= 24
    assert default == codec.compress(face, bpp=0.01, basic_bpp=0.003)
    basic = extract(data, 1)
    assert len(basic) < len(data)
    for layers in ("basic", "middle", "enhanced"):
        img = codec.decompress(data, layers=layers, output="array")
        assert img.shape == (codec.resolution, codec.resolution, 3) and img.std() > 5
    res = codec.analyze(basic)
    assert res["landmarks"].shape == (68, 2) and res["layers_used"] == "basic"


def test_default_codec_decodes_the_golden_stream(default_codec):
    """A stream written on the development machine decodes to the recorded symbols here (the
    cross-machine promise of the bitstream), and re-encoding its latents gives the same bytes."""
    if not GOLDEN_STREAM.is_file():
        pytest.skip("no golden stream recorded for the shipped default")
    data = GOLDEN_STREAM.read_bytes()
    want = json.loads(GOLDEN_STREAM.with_suffix(".json").read_text())
    y_hat, k = default_codec.decode_y(data)
    assert k == 3
    got = hashlib.sha256(b"".join(y.numpy().astype("<f4").tobytes() for y in y_hat)).hexdigest()
    assert got == want["y_hat_sha256"]
    assert default_codec.fingerprint == want["fingerprint"]


_DEFAULT_REFINER = REGISTRY["default"].refiner


@pytest.mark.skipif(_DEFAULT_REFINER not in _card_files(), reason="no shipped refiner")
def test_default_name_is_the_codec_with_the_shipped_refiner(default_codec):
    """``default`` = default.pt + its registry refiner: the streams of ``default-linear`` (no refiner), other pixels."""
    from PIL import Image

    from stylecodec.codec import Codec
    from stylecodec.refiner_weights import is_refiner_file

    assert is_refiner_file(PRETRAINED / _DEFAULT_REFINER)
    linear = Codec.from_pretrained("default-linear")
    assert default_codec.model.refiner is not None and linear.model.refiner is None
    assert default_codec.loaded.meta["refiner"]["file"] == _DEFAULT_REFINER
    assert default_codec.loaded.meta["refiner"]["images_seen"] > 0
    assert default_codec.fingerprint == linear.fingerprint and default_codec.weights_id != linear.weights_id
    assert any(float(p.abs().max()) > 0 for p in default_codec.model.refiner.out.parameters())  # not the zero start
    data = default_codec.compress(Image.open(SAMPLE))
    assert data == linear.compress(Image.open(SAMPLE))
    refined, plain = (c.decompress(data, output="array").astype(int) for c in (default_codec, linear))
    assert np.abs(refined - plain).mean() > 1


@pytest.mark.parametrize("name", sorted(n for n, e in REGISTRY.items() if e.refiner))
def test_every_registry_refiner_is_shipped_and_pinned(name):
    """Each name with a refiner points at a file listed in the card whose sha256 the registry pins (a name
    always makes the same pixels), and the file is a refiner weights file (its base fingerprint is checked
    when the name is loaded: test_refiner)."""
    from stylecodec.refiner_weights import is_refiner_file

    entry = REGISTRY[name]
    card = _card_files()
    if entry.refiner not in card:
        pytest.skip(f"{entry.refiner} is not shipped in this checkout")
    assert entry.refiner_sha256 == card[entry.refiner]
    assert is_refiner_file(PRETRAINED / entry.refiner)


def test_cli_search_on_the_default_codec(default_codec, tmp_path, capsys):
    """``compress --search-steps``: the default budget holds, any decoder reads the stream, the search's
    distortion is not above the plain stream's; a negative count is a usage error; a W+ model refuses."""
    from PIL import Image

    from stylecodec.cli import main
    from stylecodec.model import StyleCodecModel, tiny_config
    from stylecodec.rate import fits_budget

    plain, searched = tmp_path / "plain.sfc", tmp_path / "searched.sfc"
    for out, extra in ((plain, []), (searched, ["--search-steps", "4"])):
        assert main(["compress", str(SAMPLE), "-o", str(out), "--align", "off", *extra]) == 0
    a, b = plain.read_bytes(), searched.read_bytes()
    assert fits_budget(b, 256, *default_codec.default_budget)
    default_codec.set_search(1)
    try:
        x = default_codec.preprocess(Image.open(SAMPLE), aligned=True)
        da, db = (default_codec.search.distortion(default_codec._decoded_pixels(s), x).item() for s in (a, b))
    finally:
        default_codec.set_search(0)
    assert db <= da
    with pytest.raises(SystemExit) as e:
        main(["compress", str(SAMPLE), "-o", str(tmp_path / "x.sfc"), "--search-steps", "-1"])
    assert e.value.code == 2
    from stylecodec.codec import Codec
    from stylecodec.errors import StylecodecError

    with pytest.raises(StylecodecError, match="machine-first"):
        Codec(StyleCodecModel(tiny_config())).set_search(3)
