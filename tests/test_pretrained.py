"""The weights shipped in pretrained/: each file the model card lists exists, has the sha256 the
card states, loads with the safe loaders and does what the card says (no training here)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

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
