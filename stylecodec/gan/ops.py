"""Pure-PyTorch versions of StyleGAN2's custom ops (no CUDA extensions, runs on CPU).

Numerically these follow the reference ("ref") paths of NVIDIA's stylegan2-ada-pytorch
``torch_utils/ops`` (``upfirdn2d``, ``bias_act``, ``conv2d_resample``) and
``training/networks.py::modulated_conv2d``, so official weights give the same images.
Filters are the [1,3,3,1] binomial made 2-D and normalised (``setup_filter``).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch.nn import functional

__all__ = ["assert_shape", "normalize_2nd_moment", "setup_filter", "upfirdn2d", "upsample2d",
           "downsample2d", "ACTIVATIONS", "bias_act", "conv2d_resample", "modulated_conv2d"]


def assert_shape(x: torch.Tensor, shape: Sequence[int | None], name: str = "tensor") -> None:
    """Raise AssertionError unless ``x.shape`` matches ``shape`` (None = any size)."""
    if x.ndim != len(shape) or any(s is not None and int(d) != s for d, s in zip(x.shape, shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise AssertionError(f"{name}: expected shape {want}, got {list(x.shape)}")


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# --------------------------------------------------------------------------- FIR filtering

def setup_filter(f=(1, 3, 3, 1), normalize: bool = True) -> torch.Tensor:
    """1-D taps -> 2-D float32 filter (outer product), normalised to unit DC gain."""
    f = torch.as_tensor(f if f is not None else 1, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1:          # official: separable only for >= 8 taps; [1,3,3,1] becomes 4x4
        f = torch.outer(f, f)
    assert f.ndim == 2 and f.numel() > 0
    return f / f.sum() if normalize else f


def _pad4(padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    return tuple(padding)  # type: ignore[return-value]


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1, padding=0,
              flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Upsample (zero insertion), pad (negative = crop), FIR-filter, downsample; per channel.

    padding: int, [x, y] or [x0, x1, y0, y1], with respect to the upsampled image.
    """
    assert x.ndim == 4
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    n, c, h, w = x.shape
    px0, px1, py0, py1 = _pad4(padding)
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = functional.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = functional.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    x = functional.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2, gain: float = 1) -> torch.Tensor:
    fh, fw = f.shape
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=gain * up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2, gain: float = 1) -> torch.Tensor:
    fh, fw = f.shape
    p = [(fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=p, gain=gain)


# --------------------------------------------------------------------------- bias + activation

# name -> (function(x, alpha), default alpha, default gain)
ACTIVATIONS = {
    "linear":  (lambda x, a: x, 0.0, 1.0),
    "relu":    (lambda x, a: functional.relu(x), 0.0, math.sqrt(2)),
    "lrelu":   (lambda x, a: functional.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh":    (lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": (lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "swish":   (lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
    "elu":     (lambda x, a: functional.elu(x), 0.0, 1.0),
    "selu":    (lambda x, a: functional.selu(x), 0.0, 1.0),
    "softplus": (lambda x, a: functional.softplus(x), 0.0, 1.0),
}


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = "linear",
             alpha: float | None = None, gain: float | None = None,
             clamp: float | None = None) -> torch.Tensor:
    """x + b (broadcast along ``dim``), activation, * gain (default: the activation's), clamp."""
    func, def_alpha, def_gain = ACTIVATIONS[act]
    alpha = float(def_alpha if alpha is None else alpha)
    gain = float(def_gain if gain is None else gain)
    if torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad)):
        if b is not None:
            assert b.ndim == 1 and b.shape[0] == x.shape[dim]
            x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
        x = func(x, alpha)
        x = x * gain if gain != 1 else x
        return x.clamp(-clamp, clamp) if clamp is not None and clamp >= 0 else x
    # Inference: same arithmetic, in place on one fresh tensor (the caller's x is never modified).
    if b is not None:
        assert b.ndim == 1 and b.shape[0] == x.shape[dim]
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    elif act != "linear" or gain != 1 or clamp is not None:
        x = x.clone()
    if act == "lrelu":
        functional.leaky_relu_(x, alpha)
    elif act == "relu":
        x.relu_()
    elif act != "linear":
        x = func(x, alpha)
    if gain != 1:
        x.mul_(gain)
    if clamp is not None and clamp >= 0:
        x.clamp_(-clamp, clamp)
    return x


# --------------------------------------------------------------------------- resampling conv

def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    if not flip_weight:              # conv2d is correlation; flip for true convolution
        w = w.flip([2, 3])
    op = functional.conv_transpose2d if transpose else functional.conv2d
    return op(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, padding=0, groups: int = 1, flip_weight: bool = True) -> torch.Tensor:
    """2-D convolution with optional FIR up/downsampling (same paths as the official op)."""
    assert x.ndim == 4 and w.ndim == 4 and w.dtype == x.dtype
    out_c, in_c_per_group, kh, kw = w.shape
    fh, fw = f.shape if f is not None else (1, 1)
    px0, px1, py0, py1 = _pad4(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = [px0, px1, py0, py1]
    if kw == 1 and kh == 1 and down > 1 and up == 1:      # 1x1 down: filter first
        x = upfirdn2d(x, f, down=down, padding=pad)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:      # 1x1 up: convolve first
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=pad, gain=up ** 2)
    if down > 1 and up == 1:                              # down: filter, strided conv
        x = upfirdn2d(x, f, padding=pad)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:                                            # up: transposed strided conv, filter
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_c // groups, in_c_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_c_per_group, out_c // groups, kh, kw)
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True,
                  flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2)
        return upfirdn2d(x, f, down=down) if down > 1 else x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:  # plain conv
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d(x, None, padding=pad)
    return _conv(x, w, groups=groups, flip_weight=flip_weight)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: torch.Tensor | None = None, up: int = 1, down: int = 1, padding=0,
                     resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True) -> torch.Tensor:
    """StyleGAN2 weight modulation (+ demodulation), conv with up/down, + noise.

    x [N, I, H, W], weight [O, I, k, k], styles [N, I]; fused = one grouped conv per batch.
    """
    n = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    assert_shape(x, [n, in_c, None, None], "modulated_conv2d x")
    assert_shape(styles, [n, in_c], "modulated_conv2d styles")
    if x.dtype in (torch.float16, torch.bfloat16) and demodulate:  # avoid half overflow
        weight = weight * (1 / math.sqrt(in_c * kh * kw)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)          # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()            # [N, O]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down,
                            padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(n, -1, 1, 1))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        return x + noise.to(x.dtype) if noise is not None else x
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_c, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                        groups=n, flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    return x + noise.to(x.dtype) if noise is not None else x
