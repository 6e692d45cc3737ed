"""The codec's multi-task scalable rate-distortion objective (DESIGN.md §1, "Training objective").

With x̂_k = G(Ŵ⁺_k), the decode of the first k layers (layers above k are the LSET's
predictions), and m[q] the rate multiplier of quality q::

    loss = λ_rate·c·mean_i(m[q_i]·bpp_i)                                  R(basic, middle, enhanced)
         + λ_b·[w_id·(1 − cos(f(x), f(x̂_1))) + Σ heads(out, x)]          D_machine(basic)
         + λ_m·[w_id·(1 − cos(f(x), f(x̂_2))) + w_lpips·LPIPS(x, x̂_2)]     D_identity/perceptual(basic+middle)
         + λ_e·[w_lpips·LPIPS(x, x̂_3) + w_l2·MSE + w_ssim·(1 − MS-SSIM)]  D_fidelity(all)
         + λ_w·mean_k ‖Ŵ⁺_k − sg(W⁺_E)‖²  [+ λ_w·(‖W⁺_E − w‖² + ‖Ŵ⁺_3 − w‖²) when the true w is known]

``bpp_i`` are the bits of all three layers of sample i (−log2 of the likelihoods) per pixel,
``c`` the rate controller's scale (see ``stylecodec.train.codec``) and f the identity network
(FaceNet, or a fixed random stand-in for tests). Gain units: m[q] = ratio^(Q−1−q), so the
highest quality has the smallest rate weight. Machine heads are pluggable:
:data:`MACHINE_HEADS` maps a name to ``factory(model, identity) -> module``; each head is called
as ``head(out, x, e_x)`` (e_x: the identity net's embeddings of x, or None) and returns {name: scalar loss}; its parameters train with the codec's
(:mod:`stylecodec.train.machine_heads`; ``analysis`` = the landmark + identity heads). :class:`RateController` sets c so
that the highest quality's whole file (container + payload) lands at a byte target.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional

from .. import bitstream
from ..assets.facenet import _FILE, load_facenet, preprocess
from ..assets.fetch import cache_dir
from ..errors import StylecodecError
from ..layers import LAYER_NAMES
from ..metrics.image import ms_ssim
from ..metrics.lpips import lpips_distance
from ..model import StyleCodecModel
from .common import autocast
from .machine_heads import analysis_term

__all__ = ["LossWeights", "CodecObjective", "RateController", "StandInIdentity", "IdentityNet", "build_identity",
           "MACHINE_HEADS", "rate_multipliers", "IDENTITY_NETS", "PERCEPTUAL_NETS", "CONTAINER_BYTES", "BASIC_CONTAINER_BYTES"]

IDENTITY_NETS = ("facenet", "standin", "auto", "none")
PERCEPTUAL_NETS = ("alex", "vgg", "none")
CONTAINER_BYTES = bitstream.container_bytes([0] * len(LAYER_NAMES))   # header + (length, CRC) per layer, < 128 B each
BASIC_CONTAINER_BYTES = bitstream.container_bytes([0])               # the same for the basic layer extracted alone
# name -> factory(model, identity) -> head module; head(out, x, e_x) -> {name: scalar loss}: D_machine terms.
MACHINE_HEADS: dict[str, Callable] = {"analysis": analysis_term}


@dataclass
class LossWeights:
    """Every weight of the objective (see the module docstring)."""
    rate: float = 10.0        # λ_rate (per bpp)
    rate_ratio: float = 1.6   # m[q] = rate_ratio ** (Q - 1 - q)
    basic: float = 1.0        # λ_b
    middle: float = 1.0       # λ_m
    enhanced: float = 1.0     # λ_e
    identity: float = 1.0     # w_id inside D_machine and D_identity
    lpips: float = 1.0        # w_lpips inside D_identity and D_fidelity
    l2: float = 1.0           # w_l2 inside D_fidelity (MSE of [-1, 1] images)
    ms_ssim: float = 0.0      # w_ssim inside D_fidelity
    latent: float = 1.0       # λ_w


def rate_multipliers(num_qualities: int, ratio: float) -> torch.Tensor:
    """m[q] = ratio^(Q-1-q), float32 [Q]: 1 at the highest quality, larger below."""
    return torch.tensor([ratio ** (num_qualities - 1 - q) for q in range(num_qualities)], dtype=torch.float32)


class StandInIdentity(nn.Module):
    """A fixed, seeded random CNN: images [N, 3, H, W] in [-1, 1] -> unit 512-d embeddings.
    Same interface as FaceNet for tests and machines without its weights; it measures nothing."""

    def __init__(self, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 16, 5, 2, 2), nn.LeakyReLU(0.2), nn.Conv2d(16, 32, 3, 2, 1),
                                 nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 3, 2, 1), nn.AdaptiveAvgPool2d(4),
                                 nn.Flatten(), nn.Linear(1024, 512))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(max(p[0].numel(), 1)))
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.normalize(self.net(x), dim=1)


class IdentityNet(nn.Module):
    """FaceNet with its preprocessing: images in [-1, 1] -> unit 512-d embeddings (differentiable)."""

    def __init__(self, net: nn.Module, size: int = 160):
        super().__init__()
        self.net, self.size = net.eval().requires_grad_(False), int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.normalize(self.net(preprocess(x, size=self.size)).float(), dim=1)


def _facenet_cached() -> bool:
    return (cache_dir() / _FILE).is_file()


def build_identity(kind: str, device, size: int = 160, log=print) -> nn.Module | None:
    """The identity network f: 'facenet' (fetched and converted on first use), 'standin',
    'auto' (FaceNet when its converted weights are cached, else the stand-in) or 'none'."""
    if kind not in IDENTITY_NETS:
        raise StylecodecError(f"unknown identity network {kind!r}; choose from {', '.join(IDENTITY_NETS)}")
    if kind == "none":
        return None
    if kind == "auto":
        kind = "facenet" if _facenet_cached() else "standin"
        if kind == "standin":
            log("[codec] FaceNet weights are not cached: the identity terms use a random stand-in network")
    if kind == "standin":
        return StandInIdentity().to(device)

    return IdentityNet(load_facenet("cpu"), size).to(device)


class CodecObjective:
    """Computes the loss of one batch and its statistics (floats) from a model forward."""

    def __init__(self, weights: LossWeights, num_qualities: int, resolution: int, identity: nn.Module | None = None,
                 perceptual: str = "alex", machine_heads: tuple = (), amp=None):
        if perceptual not in PERCEPTUAL_NETS:
            raise StylecodecError(f"unknown perceptual net {perceptual!r}; choose from {', '.join(PERCEPTUAL_NETS)}")
        self.w, self.identity, self.perceptual = weights, identity, perceptual
        self.machine_heads, self.amp = tuple(machine_heads), amp
        self.num_qualities, self.pixels = int(num_qualities), float(resolution) ** 2
        self.multipliers = rate_multipliers(self.num_qualities, weights.rate_ratio)

    # -- which decodes are needed -------------------------------------------------------------
    def prefixes(self) -> list[int]:
        """The k whose decode x̂_k some active term reads."""
        w, ident = self.w, self.identity is not None and self.w.identity > 0
        lp = self.perceptual != "none" and w.lpips > 0
        need = []
        if w.basic > 0 and (ident or self.machine_heads):
            need.append(1)
        if w.middle > 0 and (ident or lp):
            need.append(2)
        if w.enhanced > 0 and (lp or w.l2 > 0 or w.ms_ssim > 0):
            need.append(3)
        return need

    # -- terms -----------------------------------------------------------------------------
    def rate(self, bits: torch.Tensor, quality: torch.Tensor, scale: float = 1.0,
             basic_scale: float = 0.0) -> torch.Tensor:
        """λ_rate·mean_i(m[q_i]·(scale·bpp_i + basic_scale·bpp_basic_i)); bits [N, L] per layer,
        quality int64 [N]. ``basic_scale``: the extra weight on the basic layer's own budget."""
        m = self.multipliers.to(bits.device)[quality]
        per_image = scale * bits.sum(1) + (basic_scale * bits[:, 0] if basic_scale else 0.0)
        return self.w.rate * (m * per_image / self.pixels).mean()

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast(x):
            return self.identity(x).float()

    def _lpips(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        with self._autocast(x):
            return lpips_distance(x_hat, x, self.perceptual).float()

    def _autocast(self, x):
        return autocast(x.device, self.amp)

    def __call__(self, out: dict, x: torch.Tensor, x_hat: dict[int, torch.Tensor], w_true: torch.Tensor | None = None,
                 rate_scale: float = 1.0, subsets: dict | None = None,
                 labels: tuple[torch.Tensor, torch.Tensor] | None = None,
                 basic_rate_scale: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and detached statistics. ``x_hat``: {k: decode of the first k layers} for
        k in :meth:`prefixes`; ``w_true`` [N, num_ws, w_dim] when the images were generated.
        ``subsets`` (prefix sampling): {k: (sample indices, weight)} when x_hat[k] holds only
        those samples; each term of prefix k is then its subset mean times ``weight``
        (n_k / (N p_k) keeps it an unbiased estimate of the full-batch mean). ``labels``: cached teacher
        (landmarks [N, 68, 2], found [N]) of x for the machine heads (None: they run their teacher).
        ``basic_rate_scale``: extra rate weight on the basic layer (its own budget's controller)."""
        w, stats = self.w, {}
        bits = StyleCodecModel.bits(out)
        total = self.rate(bits, out["quality"], rate_scale, basic_rate_scale)
        stats["Loss/rate"] = total.detach()
        need_id = self.identity is not None and w.identity > 0
        # the identity net's embeddings of x, computed once: for the whole batch when every sample
        # needs them (no prefix sampling, or a machine head reads them), else per subset below
        whole = (subsets is None and need_id and (1 in x_hat or 2 in x_hat)) or bool(self.machine_heads)
        e_all = self._embed(x.detach()).detach() if self.identity is not None and whole else None
        terms: dict[str, torch.Tensor] = {}
        lp = self.perceptual != "none" and w.lpips > 0
        for k, name in ((1, "basic"), (2, "middle"), (3, "enhanced")):
            if k not in x_hat:
                continue
            idx, weight = subsets[k] if subsets is not None else (slice(None), 1.0)
            xk, xh = x[idx], x_hat[k]
            part: dict[str, torch.Tensor] = {}
            if k < 3 and need_id:
                e_x = e_all[idx] if e_all is not None else self._embed(xk.detach()).detach()
                part["identity"] = w.identity * (1 - (e_x * self._embed(xh)).sum(1)).mean()
            if k > 1 and lp:
                part["lpips"] = w.lpips * self._lpips(xk, xh).mean()
            if k == 3 and w.l2 > 0:
                part["l2"] = w.l2 * functional.mse_loss(xh.float(), xk.float())
            if k == 3 and w.ms_ssim > 0:
                part["ms_ssim"] = w.ms_ssim * (1 - ms_ssim((xh.float() + 1) / 2, (xk.float() + 1) / 2).float()).mean()
            terms.update({f"{name}/{t}": v * weight for t, v in part.items()})
        if self.machine_heads:
            for head in self.machine_heads:
                terms.update({f"basic/{t}": v for t, v in head(out, x, e_all, labels).items()})
        lam = {"basic": w.basic, "middle": w.middle, "enhanced": w.enhanced}
        for name, v in terms.items():
            total = total + lam[name.split("/")[0]] * v
            stats[f"Loss/{name}"] = v.detach()
        if w.latent > 0:
            target = out["ws"].detach().float()
            lat = torch.stack([functional.mse_loss(out["ws_hat"][k].float(), target) for k in sorted(out["ws_hat"])]).mean()
            stats["Loss/latent/decoded"] = lat.detach()
            if w_true is not None:
                enc = functional.mse_loss(out["ws"].float(), w_true.float())
                dec = functional.mse_loss(out["ws_hat"][max(out["ws_hat"])].float(), w_true.float())
                stats["Loss/latent/encoder_vs_w"], stats["Loss/latent/decoded_vs_w"] = enc.detach(), dec.detach()
                lat = lat + enc + dec
            total = total + w.latent * lat
        stats["Loss/total"] = total.detach()
        for l, name in enumerate(LAYER_NAMES[:bits.shape[1]]):
            stats[f"Rate/bpp_{name}"] = (bits[:, l].detach() / self.pixels).mean()
        stats["Rate/bpp"] = bits.detach().sum(1).mean() / self.pixels
        return total, stats


class RateController:
    """Scale c = exp(s) of the rate weight steering the highest quality's file to ``target_bytes``.
    s stays in [LOW, HIGH] so a long stretch under budget (early training) cannot wind it up.
    ``container_bytes``: the stream's header and layer records (the whole 3-layer file's by
    default; BASIC_CONTAINER_BYTES for a basic layer extracted alone). ``overhead_bytes``: the
    entropy coder's bytes above −log2 p until :meth:`calibrate` measures them (bitstream version 2:
    about 0.3 per layer, 1 per file)."""

    LOW, HIGH = -5.0, 8.0

    def __init__(self, target_bytes: int | None, eta: float, overhead_bytes: float = 1.0, margin_bytes: float = 0.0,
                 container_bytes: int = CONTAINER_BYTES, log_scale: float = 0.0):
        self.target, self.eta, self.overhead, self.log_scale = target_bytes, float(eta), float(overhead_bytes), log_scale
        self.margin, self.container = float(margin_bytes), int(container_bytes)
        if target_bytes is not None and self.budget_bits < 8:
            raise StylecodecError(f"a target of {target_bytes} bytes leaves no payload: the container alone takes "
                                  f"{self.container} bytes and the coder about {overhead_bytes:.0f} more")

    @property
    def enabled(self) -> bool:
        return self.target is not None and self.eta > 0

    @property
    def budget_bits(self) -> float:
        if self.target is None:
            return math.inf
        return 8.0 * (self.target - self.margin - self.container - self.overhead)

    @property
    def scale(self) -> float:
        return math.exp(self.log_scale)

    def update(self, bits_sum: float, count: float) -> None:
        if self.enabled and count > 0:
            ratio = max(bits_sum / count, 1e-3) / max(self.budget_bits, 1.0)
            self.log_scale = min(max(self.log_scale + self.eta * math.log(ratio), self.LOW), self.HIGH)

    def calibrate(self, payload_bytes: float, ideal_bytes: float) -> None:
        """Set the coder overhead from a real-coder measurement (mean payload vs. mean −log2 p / 8)."""
        self.overhead = min(max(payload_bytes - ideal_bytes, 0.0), 32.0)

    def state_dict(self) -> dict[str, float]:
        return {"log_scale": self.log_scale, "overhead": self.overhead}

    def load_state_dict(self, s: dict[str, float]) -> None:
        self.log_scale, self.overhead = float(s["log_scale"]), float(s["overhead"])
