"""LPIPS v0.1 distance (Zhang et al. 2018; AlexNet or VGG16 trunk) on image batches; the network and
its weights: :mod:`stylecodec.assets.lpips`."""
from __future__ import annotations

import numpy as np
import torch

from ..assets.lpips import MIN_SIDE, NETS, check_net, load_lpips

__all__ = ["lpips_distance", "lpips_uint8", "NETS"]


def lpips_distance(x: torch.Tensor, y: torch.Tensor, net: str = "alex") -> torch.Tensor:
    """LPIPS v0.1 distance per image: x, y (N,3,H,W) -> float32 (N,) on x's device.

    Float inputs are RGB in [-1, 1]; uint8 inputs are RGB in [0, 255] and are mapped to
    [-1, 1] as x / 127.5 - 1. Gradients flow when an input requires grad.
    """
    check_net(net)
    if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"lpips_distance needs two (N,3,H,W) batches of one shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < MIN_SIDE[net]:
        raise ValueError(f"LPIPS-{net} needs images of at least {MIN_SIDE[net]} pixels a side, "
                         f"got {tuple(x.shape[-2:])}")
    x, y = (t.float() / 127.5 - 1 if t.dtype == torch.uint8 else t.float() for t in (x, y))
    model = load_lpips(net, x.device)
    with torch.set_grad_enabled(x.requires_grad or y.requires_grad):
        return model(x, y.to(x.device)).view(-1)


def lpips_uint8(a: np.ndarray, b: np.ndarray, net: str = "alex", device: str | torch.device = "cpu",
                batch_size: int = 32) -> np.ndarray:
    """LPIPS for uint8 RGB images (H,W,3) or (N,H,W,3) -> float64 (N,) (numpy in, numpy out)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"lpips_uint8 needs uint8 images, got {a.dtype} and {b.dtype}")
    if a.ndim == 3:
        a, b = a[None], b[None]
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"lpips_uint8 needs two (N,H,W,3) arrays of one shape, got {a.shape} and {b.shape}")
    out = []
    for i in range(0, len(a), batch_size):
        ta, tb = (torch.from_numpy(np.array(v[i:i + batch_size])).permute(0, 3, 1, 2).to(device)   # (a copy:
                  for v in (a, b))                                                                 # writable)
        out.append(lpips_distance(ta, tb, net).cpu().double().numpy())
    return np.concatenate(out) if out else np.zeros(0)
