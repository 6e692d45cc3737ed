"""Pixel metrics per image: PSNR (dB) and MS-SSIM.

Both take a batch (N, ...) as a torch tensor or numpy array. uint8 inputs have a data
range of 255, float inputs of 1 (values in [0, 1]); both inputs must share shape and dtype.

MS-SSIM follows Wang et al. 2003 as implemented by ``pytorch_msssim`` (Gaussian window 11,
sigma 1.5, K = (0.01, 0.03), 2x average-pool between scales, weights (0.0448, 0.2856,
0.3001, 0.2363, 0.1333), per-channel values averaged over RGB). Five scales need a
smaller image side > 160 pixels (``pytorch_msssim`` refuses anything smaller). Smaller
images use the largest number S of scales with side > 10 * 2**(S-1), i.e. S = 4 for sides
81..160 (so 128x128 faces get 4 scales), 3 for 41..80, 2 for 21..40, 1 (plain SSIM) for
11..20, with the same window and the first S weights renormalised to sum to 1: the
coarsest scales, a few pixels wide, are dropped. :func:`ms_ssim_scales` says which S an
image size gets; at S = 5 the result equals ``pytorch_msssim.ms_ssim``.
"""
from __future__ import annotations

import numpy as np
import torch
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

__all__ = ["psnr", "ms_ssim", "ms_ssim_scales", "MS_SSIM_WEIGHTS"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN, _SIGMA = 11, 1.5


def _as_tensor(x) -> torch.Tensor:
    if not isinstance(x, np.ndarray):
        return x
    x = np.ascontiguousarray(x)
    return torch.from_numpy(x if x.flags.writeable else x.copy())   # (read-only arrays, e.g. of PIL images)


def _pair(x, y) -> tuple[torch.Tensor, torch.Tensor, float]:
    x, y = _as_tensor(x), _as_tensor(y)
    if x.shape != y.shape or x.dim() < 2:
        raise ValueError(f"need two batches (N, ...) of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dtype != y.dtype:
        raise ValueError(f"both inputs must share a dtype (uint8 or float), got {x.dtype} and {y.dtype}")
    data_range = 255.0 if x.dtype == torch.uint8 else 1.0
    return x, y, data_range


def psnr(x, y) -> torch.Tensor:
    """PSNR per image in dB: x, y (N, ...) uint8 or float in [0, 1] -> float64 (N,).

    10 * log10(range**2 / MSE) with the MSE over all values of each image; inf when equal.
    """
    x, y, data_range = _pair(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range ** 2 / mse)


def ms_ssim_scales(height: int, width: int) -> int:
    """Number of MS-SSIM scales used for an image of this size (5 at sides > 160)."""
    side = min(height, width)
    if side <= _WIN - 1:
        raise ValueError(f"MS-SSIM needs images of at least {_WIN} pixels a side, got {height}x{width}")
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and side > (_WIN - 1) * 2 ** scales:
        scales += 1
    return scales


def ms_ssim(x, y, channels_last: bool = False) -> torch.Tensor:
    """MS-SSIM per image: x, y (N,C,H,W) (or (N,H,W,C) with channels_last) -> float64 (N,).

    uint8 or float in [0, 1]; fewer scales below 161 pixels a side (see the module doc).
    Computed in float32 on the inputs' device, like ``pytorch_msssim``.
    """
    x, y, data_range = _pair(x, y)
    if x.dim() != 4:
        raise ValueError(f"ms_ssim needs (N,C,H,W) batches, got {tuple(x.shape)}")
    if channels_last:
        x, y = x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2)
    x, y = x.float(), y.float()      # float32 like pytorch_msssim (float64 convs are ~10x slower)
    scales = ms_ssim_scales(*x.shape[-2:])
    weights = x.new_tensor(MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    win = _fspecial_gauss_1d(_WIN, _SIGMA).to(x).repeat(x.shape[1], 1, 1, 1)
    factors = []
    for i in range(scales):
        ssim_c, cs_c = _ssim(x, y, win=win, data_range=data_range, size_average=False, K=(0.01, 0.03))
        if i < scales - 1:
            factors.append(torch.relu(cs_c))
            pad = [s % 2 for s in x.shape[2:]]
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2, padding=pad)
            y = torch.nn.functional.avg_pool2d(y, kernel_size=2, padding=pad)
    factors.append(torch.relu(ssim_c))
    per_channel = torch.prod(torch.stack(factors) ** weights.view(-1, 1, 1), dim=0)   # (N, C)
    return per_channel.mean(1).double()
