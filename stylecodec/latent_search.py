"""Encoder-side search: the pixel layers' latents chosen for the face the decoder will draw.

The plain encoder sends the eigenface coefficients of a face (a projection) and lets the decoder
refine what it receives. The search starts there and moves ``[y_middle, y_enhanced]`` by gradient
descent on the *decoded* face, through the coder's exact emulation (each group rounded around its
LSET mean, straight-through) and the frozen decoder (eigenfaces + refiner):

    min_y  w_l1·|x̂ - x|₁ + w_mse·|x̂ - x|² + w_lpips·LPIPS-Alex(x̂, x) + w_id·(1 - cos(facenet(x̂), facenet(x)))
           + w_rate·max(0, bits(y) - target)

x̂: the R x R face decoded from all layers, x: the face being coded (both in [-1, 1]); bits: the
LSET's ideal bits of the pixel layers. The basic layer (identity, shape) is not touched: what the
machines read stays the plain encoder's. Nothing changes for the decoder or the stream format;
a search is the encoder spending time (like a video encoder's rate-distortion search), so a
stream's bytes depend on the thread count here, its decoding does not.

    search = LatentSearch(model)                        # SearchConfig() defaults
    ys = search(x, ys, quality, extra_bits)             # x [1, 3, R, R]; ys unscaled [y_l [1, d_l]]
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["SearchConfig", "LatentSearch"]


# The field values a key names by the step count alone ("s40"): the defaults when keys were introduced.
_KEY_BASE = dict(lr=0.03, w_l1=1.0, w_mse=15.0, w_lpips=1.0, w_id=0.0, w_rate=0.01, margin_bytes=2.0)


@dataclass(frozen=True)
class SearchConfig:
    steps: int = 40               # Adam steps per face (0: no search)
    lr: float = 0.03              # first step size, whitened latent units; cosine-annealed to 0
    w_l1: float = 1.0             # weight of the mean absolute error (images in [-1, 1])
    w_mse: float = 25.0           # weight of the mean squared error (PSNR's loss; 15 until issue 17's 1,000-face run)
    w_lpips: float = 1.0          # weight of LPIPS-Alex
    w_id: float = 0.0             # weight of 1 - facenet cosine (the refiner's identity teacher; 0: off, not loaded)
    w_rate: float = 0.01          # weight per bit of the pixel layers above the target
    margin_bytes: float = 2.0     # bytes kept free below a budget (the coder's overhead over ideal bits)

    def __post_init__(self):
        if self.steps < 0 or not self.lr > 0 or min(self.w_l1, self.w_mse, self.w_lpips, self.w_id, self.w_rate) < 0:
            raise ValueError(f"bad search config {self}")

    def key(self) -> str:
        """Names the streams this search writes: ``s40``, plus a hash of the fields that differ from
        ``_KEY_BASE`` (fixed values, not the current defaults: changing a default must not re-mean a key
        that cached results were written under; a new field is added there with its first default)."""
        changed = {f.name: getattr(self, f.name) for f in fields(self)
                   if f.name != "steps" and getattr(self, f.name) != _KEY_BASE[f.name]}
        if not changed:
            return f"s{self.steps}"
        return f"s{self.steps}-" + hashlib.sha1(repr(sorted(changed.items())).encode()).hexdigest()[:10]


class LatentSearch:
    """See the module docstring. ``model``: a MachineFirstModel (eval mode; its weights are not changed)."""

    def __init__(self, model, config: SearchConfig = SearchConfig()):
        if not hasattr(model, "pixel_latents"):
            raise TypeError(f"the latent search needs a machine-first model, got {type(model).__name__}")
        from .assets.lpips import load_lpips

        self.model, self.config = model, config
        self.lpips = load_lpips("alex", model.gain.device).eval()
        for p in self.lpips.parameters():
            p.requires_grad_(False)
        self.facenet = None
        if config.w_id > 0:
            from .assets.facenet import load_facenet

            self.facenet = load_facenet(model.gain.device)            # frozen, eval mode

    def identity(self, x: torch.Tensor) -> torch.Tensor:
        """facenet embeddings [N, 512] (unit) of x [N, 3, R, R] in [-1, 1], differentiable."""
        from .assets.facenet import preprocess

        return self.facenet(preprocess(x, 160))

    @torch.no_grad()
    def reference_identity(self, x: torch.Tensor) -> torch.Tensor | None:
        """:meth:`identity` of the face being coded, for :meth:`distortion`'s ``x_id`` (None when w_id is 0)."""
        return self.identity(x) if self.facenet is not None else None

    def distortion(self, x_hat: torch.Tensor, x: torch.Tensor, x_id: torch.Tensor | None = None) -> torch.Tensor:
        """The search's distortion per face [N]; x_hat, x [N, 3, R, R] in [-1, 1]; ``x_id``: :meth:`identity`
        of ``x`` when already computed (w_id > 0)."""
        c = self.config
        d = c.w_l1 * (x_hat - x).abs().mean((1, 2, 3)) + c.w_mse * ((x_hat - x) ** 2).mean((1, 2, 3))
        d = d + c.w_lpips * self.lpips(x_hat, x).flatten().float()
        if self.facenet is not None:
            x_id = self.identity(x) if x_id is None else x_id
            d = d + c.w_id * (1 - F.cosine_similarity(self.identity(x_hat), x_id, dim=1))
        return d

    def __call__(self, x: torch.Tensor, ys: Sequence[torch.Tensor], quality: int, extra_bits: float = 0.0,
                 ) -> list[torch.Tensor]:
        """x [1, 3, R, R] in [-1, 1]; ys unscaled latents [y_l [1, d_l]] (the plain encoder's); ``extra_bits``:
        pixel-layer bits above what ``ys`` costs that the search may use at no cost. Returns the latents
        [y_basic (as given), y_middle, y_enhanced] as float64 CPU tensors for ``Codec.compress_latents``."""
        m, c = self.model, self.config
        assert x.ndim == 4 and x.shape[0] == 1 and x.shape[1:] == (3, m.resolution, m.resolution), tuple(x.shape)
        assert len(ys) == 3 and all(y.shape == (1, d) for y, d in zip(ys, m.latent_dims)), [tuple(y.shape) for y in ys]
        dev = m.gain.device
        x = x.to(dev, torch.float32)
        y0 = ys[0].to(dev, torch.float32)
        var = [y.detach().to(dev, torch.float32).clone().requires_grad_(True) for y in ys[1:]]
        q = torch.full((1,), int(quality), device=dev)
        target_bits = None                                          # what ys cost (the first step) + extra_bits
        x_id = self.reference_identity(x)
        frozen = [p for p in m.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            with torch.enable_grad():
                opt = torch.optim.Adam(var, lr=c.lr)
                for step in range(c.steps):
                    for g in opt.param_groups:                     # cosine annealing to 0
                        g["lr"] = 0.5 * c.lr * (1 + math.cos(math.pi * step / c.steps))
                    out = m([y0, *var], q, quant="ste")
                    bits = m.bits(out)[0, 1:].sum()
                    if target_bits is None:
                        target_bits = bits.item() + max(extra_bits, 0.0)
                    loss = self.distortion(m.render(out["y_hat"], fast=True), x, x_id).sum()
                    loss = loss + c.w_rate * torch.relu(bits - target_bits)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return [ys[0].detach().to("cpu", torch.float64)] + [v.detach().to("cpu", torch.float64) for v in var]
