"""Check that stylecodec.gan computes what NVIDIA's stylegan2-ada-pytorch computes, weight for weight.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/compare_official.py \
        --official-src /path/to/stylegan2-ada-pytorch

The official code is NOT part of this repository (its licence keeps it out): point
``--official-src`` at a checkout of https://github.com/NVlabs/stylegan2-ada-pytorch (only
``training/networks.py``, ``torch_utils/`` and ``dnnlib/`` are imported; on CPU its ops take
their pure-PyTorch reference paths, nothing is compiled). The directory is put first on
``sys.path``.

For a handful of small configurations (16-64 px, z_dim = w_dim = 64, 2-8 mapping layers,
'skip' / 'resnet' / 'orig' generators and discriminators, conv_clamp None / 256 / 0.5 (the
last so that clamping is active), unconditional and conditional, a non-default mapping
lr_multiplier, use_noise=False, Freeze-D, an 8-tap filter with an elu mapping net,
num_fp16_res = 0) the script builds official networks,
writes them to an in-memory pickle exactly as the official training loop does
(``{'G', 'D', 'G_ema'}`` of persistent objects) and reads them back with our public loader
``stylecodec.gan.load_official`` (no official code involved on that side). It also loads a
bare ``{'G_ema': state_dict}`` file through the same loader (kwargs inferred from shapes).
It then compares, in float32 on CPU:

  structure   parameter and buffer names/shapes (parameter vs buffer too), the non-tensor
              attributes both modules define (weight_gain, bias_gain, act_gain, padding,
              conv_clamp, up/down, ...), the loaded state dict, and the initial weights of
              both implementations built from the same kwargs under the same seed
  mapping     w with truncation psi = 0.7 towards a random (non-zero) w_avg, with a
              truncation_cutoff, and the w_avg update of one training-mode call
  synthesis   images for the same W+ codes (different w per layer), noise_mode 'const',
              'none' and 'random' (both draw torch.randn in the same order, so a fixed seed
              gives the same noise), fused and non-fused modulation, no-grad (our in-place
              inference path) and grad-enabled forward
  G(z, c)     the full path (mapping + truncation + synthesis)
  gradients   of sum(img * R) w.r.t. ws and every synthesis parameter, of sum(G(z,c) * R)
              w.r.t. z and every G parameter (catches weight-gain / lr_multiplier
              mistakes), of sum(D(img, c) * r) w.r.t. img and every D parameter
  D           logits of the official and our discriminator for the same images

Each row reports max |ours - official| and that divided by max |official| (per tensor; for
the parameter-gradient rows the worst tensor is named). A row fails when the relative
difference exceeds --rtol (default 1e-5; --grad-rtol, default 1e-4, for gradient rows) or,
for the structure rows, when anything differs. Our networks currently match bit for bit
(every difference 0) except in the 8-tap configuration, where the official code filters
separably and ours with the 2-D outer product (<= 3e-6 relative, float32 rounding); for scale, an output-invariant change (styles * 1.0001 before
demodulation) moves outputs by ~1e-6 relative and the scalar noise_strength gradients by up
to ~1.5e-5, so the tolerances sit just above float32 reordering noise. Two configurations
use an asymmetric resample filter: with the symmetric default [1,3,3,1] a flipped FIR
filter would pass unnoticed. Differences in constructor signatures, and what a bare state
dict cannot carry (conv_clamp, lr_multiplier), are printed as notes. Exit status: 0 when every
row passes, 1 otherwise. Runs in about ten seconds on one CPU thread.
"""
from __future__ import annotations

import argparse
import copy
import inspect
import io
import logging
import math
import os
import pickle
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import torch

from stylecodec.gan import discriminator as our_disc
from stylecodec.gan import layers as our_layers
from stylecodec.gan import load_official
from stylecodec.gan import synthesis as our_synth

BATCH = 2


# --------------------------------------------------------------------------- configurations

@dataclass
class GConfig:
    name: str
    res: int
    architecture: str = "skip"
    conv_clamp: float | None = None
    c_dim: int = 0
    mapping: dict = field(default_factory=lambda: dict(num_layers=2))
    channel_base: int = 512
    channel_max: int = 64
    dim: int = 64
    resample_filter: list | None = None     # None = the default [1,3,3,1]
    extra: dict = field(default_factory=dict)   # more synthesis kwargs (e.g. use_noise)

    def kwargs(self) -> dict:
        syn = dict(channel_base=self.channel_base, channel_max=self.channel_max, num_fp16_res=0,
                   conv_clamp=self.conv_clamp, architecture=self.architecture, **self.extra)
        if self.resample_filter is not None:
            syn["resample_filter"] = list(self.resample_filter)
        return dict(z_dim=self.dim, c_dim=self.c_dim, w_dim=self.dim, img_resolution=self.res, img_channels=3,
                    mapping_kwargs=dict(self.mapping), synthesis_kwargs=syn)


@dataclass
class DConfig:
    name: str
    res: int
    architecture: str = "resnet"
    conv_clamp: float | None = None
    c_dim: int = 0
    batch: int = BATCH
    mbstd_group_size: int | None = 4
    channel_base: int = 512
    channel_max: int = 64
    resample_filter: list | None = None
    freeze_layers: int = 0                  # Freeze-D: the first layers hold their weights as buffers

    def kwargs(self) -> dict:
        block = dict(resample_filter=list(self.resample_filter)) if self.resample_filter is not None else {}
        if self.freeze_layers:
            block["freeze_layers"] = self.freeze_layers
        return dict(c_dim=self.c_dim, img_resolution=self.res, img_channels=3, architecture=self.architecture,
                    channel_base=self.channel_base, channel_max=self.channel_max, num_fp16_res=0,
                    conv_clamp=self.conv_clamp, block_kwargs=block,
                    epilogue_kwargs=dict(mbstd_group_size=self.mbstd_group_size))


G_CONFIGS = [
    GConfig("G32-skip", 32),
    GConfig("G32-resnet-c4-clamp256", 32, "resnet", 256, c_dim=4,
            mapping=dict(num_layers=8, layer_features=48, embed_features=32)),
    GConfig("G16-orig-clamp256", 16, "orig", 256, mapping=dict(num_layers=4, lr_multiplier=0.1)),
    GConfig("G64-skip-clamp0.5", 64, "skip", 0.5, channel_base=256, channel_max=32),   # clamping active
    GConfig("G32-resnet-clamp0.5", 32, "resnet", 0.5),
    # An asymmetric low-pass filter: with the symmetric default a flipped filter or a
    # mirrored padding would go unnoticed.
    GConfig("G32-skip-filt1253", 32, "skip", resample_filter=[1, 2, 5, 3]),
    GConfig("G16-resnet-filt1253-nonoise", 16, "resnet", resample_filter=[1, 2, 5, 3],
            extra=dict(use_noise=False)),
    # 8 taps: the official filter stays 1-D (separable), ours is its 2-D outer product; elu mapping.
    GConfig("G16-skip-filt8-elu", 16, "skip", resample_filter=[1, 2, 4, 6, 6, 4, 2, 1],
            mapping=dict(num_layers=2, activation="elu")),
]
D_CONFIGS = [
    DConfig("D32-resnet-c4-clamp256", 32, "resnet", 256, c_dim=4),
    DConfig("D16-skip", 16, "skip"),
    DConfig("D64-orig-b4-mbstd2", 64, "orig", batch=4, mbstd_group_size=2, channel_base=256, channel_max=32),
    DConfig("D32-resnet-clamp0.5-mbstdN", 32, "resnet", 0.5, mbstd_group_size=None),
    DConfig("D32-skip-filt1253", 32, "skip", resample_filter=[1, 2, 5, 3]),
    DConfig("D16-resnet-filt1253-freeze3", 16, "resnet", resample_filter=[1, 2, 5, 3], freeze_layers=3),
]


# --------------------------------------------------------------------------- reporting

class Report:
    def __init__(self, rtol: float, grad_rtol: float):
        self.rtol = rtol
        self.grad_rtol = grad_rtol
        self.rows: list[tuple[str, str, str, str, str, bool]] = []
        self.notes: list[str] = []

    def _add(self, cfg, check, absd, reld, extra, ok):
        self.rows.append((cfg, check, absd, reld, extra, ok))

    def tensors(self, cfg: str, check: str, ours, ref) -> None:
        """Compare two tensors (or two {name: tensor} dicts: the worst entry is reported)."""
        if isinstance(ref, torch.Tensor):
            ours, ref = {"": ours}, {"": ref}
        worst = (-1.0, 0.0, "")
        for k, r in ref.items():
            o, r = ours.get(k), as_2d_filter(k, r)
            if o is None and r is None:
                continue
            if o is None or r is None:            # one side got no gradient: compare with zeros
                o = torch.zeros_like(r) if o is None else o
                r = torch.zeros_like(o) if r is None else r
            if o.shape != r.shape:
                self._add(cfg, check, "shape", "shape", f"{k}: {list(o.shape)} vs {list(r.shape)}", False)
                return
            a = (o.detach().double() - r.detach().double()).abs().max().item() if r.numel() else 0.0
            scale = r.detach().double().abs().max().item() if r.numel() else 0.0
            rel = a / scale if scale > 0 else (0.0 if a == 0 else math.inf)
            if rel > worst[0]:
                worst = (rel, a, k)
        rel, a, k = worst
        missing = sorted(set(ours) - set(ref))
        extra = (f"worst: {k}" if k and a > 0 else "") + (f" ours-only: {missing[:3]}" if missing else "")
        tol = self.grad_rtol if check.startswith("d/d") else self.rtol
        self._add(cfg, check, f"{a:.2e}", f"{rel:.2e}", extra, rel <= tol and not missing)

    def exact(self, cfg: str, check: str, problems: list[str]) -> None:
        self._add(cfg, check, "-", "-", "; ".join(problems[:4]) + (" ..." if len(problems) > 4 else ""),
                  not problems)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def print(self) -> bool:
        head = ("config", "check", "max|diff|", "rel", "ok", "detail")
        rows = [(c, k, a, r, "ok" if ok else "FAIL", e) for c, k, a, r, e, ok in self.rows]
        w = [max(len(str(x[i])) for x in rows + [head]) for i in range(5)]
        line = lambda x: "  ".join(str(x[i]).ljust(w[i]) for i in range(5)) + "  " + str(x[5])
        print(line(head))
        print("  ".join("-" * n for n in w) + "  ------")
        for r in rows:
            print(line(r))
        if self.notes:
            print("\nnotes:")
            for n in self.notes:
                print("  - " + n)
        n_bad = sum(not ok for *_, ok in self.rows)
        print(f"\n{len(self.rows) - n_bad}/{len(self.rows)} checks passed "
              f"(rtol {self.rtol:g}, gradients {self.grad_rtol:g})")
        return n_bad == 0


# --------------------------------------------------------------------------- helpers

def import_official(src: str):
    if not os.path.isfile(os.path.join(src, "training", "networks.py")):
        sys.exit(f"--official-src {src!r} does not look like a stylegan2-ada-pytorch checkout "
                 "(no training/networks.py)")
    sys.path.insert(0, os.path.abspath(src))
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)   # "No CUDA runtime is found"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # distutils / cpp_extension deprecation noise
        from training import networks             # noqa: E402  (official code)
    return networks


def to_pickle(**nets) -> io.BytesIO:
    """The official network-pickle layout: persistent objects pickled as the training loop does."""
    buf = io.BytesIO()
    pickle.dump(dict(nets, augment_pipe=None, training_set_kwargs=None), buf)
    buf.seek(0)
    return buf


def param_grads(module) -> dict:
    return {k: p.grad for k, p in module.named_parameters()}


def zero_grads(*modules) -> None:
    for m in modules:
        for p in m.parameters():
            p.grad = None


def seeded(seed: int, fn, *args, **kwargs):
    torch.manual_seed(seed)
    return fn(*args, **kwargs)


def orig_class(cls):
    """The undecorated class behind an official @persistent_class."""
    return cls.__bases__[0] if getattr(cls, "_orig_class_name", None) else cls


def as_2d_filter(name: str, t):
    """Official filters of >= 8 taps stay 1-D (separable); ours hold their 2-D outer product."""
    if name.endswith("resample_filter") and isinstance(t, torch.Tensor) and t.ndim == 1:
        return t[:, None] * t[None, :]
    return t


def structure_problems(ours: torch.nn.Module, ref: torch.nn.Module, attrs: bool = True) -> list[str]:
    """Names/shapes of parameters and buffers, parameter-vs-buffer, (attrs) shared scalar attributes."""
    out = []
    for kind in ("named_parameters", "named_buffers"):
        o = {k: tuple(v.shape) for k, v in getattr(ours, kind)()}
        r = {k: tuple(as_2d_filter(k, v).shape) for k, v in getattr(ref, kind)()}
        out += [f"{kind[6:-1]} only official: {k}" for k in sorted(set(r) - set(o))]
        out += [f"{kind[6:-1]} only ours: {k}" for k in sorted(set(o) - set(r))]
        out += [f"{k} shape {o[k]} vs {r[k]}" for k in sorted(set(o) & set(r)) if o[k] != r[k]]
    if not attrs:
        return out
    ours_mods = dict(ours.named_modules())
    for name, rm in ref.named_modules():
        om = ours_mods.get(name)
        if om is None:
            out.append(f"module only official: {name or '<root>'}")
            continue
        if type(om).__name__ != orig_class(type(rm)).__name__:
            out.append(f"{name}: {type(om).__name__} vs {type(rm).__name__}")
        for attr, rv in vars(rm).items():
            if attr.startswith("_") or attr not in vars(om) or isinstance(rv, (torch.Tensor, torch.nn.Module)):
                continue
            ov = vars(om)[attr]
            if isinstance(rv, (bool, str, type(None))) or isinstance(ov, (bool, str, type(None))):
                same = ov == rv
            elif isinstance(rv, (int, float)) or hasattr(rv, "dtype"):   # numpy scalars included
                same = math.isclose(float(ov), float(rv), rel_tol=1e-12, abs_tol=0.0)
            elif isinstance(rv, (list, tuple, dict)):
                same = ov == rv
            else:
                continue
            if not same:
                out.append(f"{name or '<root>'}.{attr} = {ov!r} vs official {rv!r}")
    return out


def signature_notes(networks) -> list[str]:
    """Constructor arguments / defaults that differ between same-named classes."""
    ours = {c.__name__: c for m in (our_layers, our_synth, our_disc) for c in vars(m).values()
            if isinstance(c, type) and issubclass(c, torch.nn.Module) and c.__module__ == m.__name__}
    notes = []
    for name, cls in sorted(ours.items()):
        ref = getattr(networks, name, None)
        if ref is None:
            notes.append(f"{name}: no official class of that name")
            continue
        po = {k: v.default for k, v in inspect.signature(cls.__init__).parameters.items() if k != "self"}
        pr = {k: v.default for k, v in inspect.signature(orig_class(ref).__init__).parameters.items() if k != "self"}
        only_r, only_o = sorted(set(pr) - set(po)), sorted(set(po) - set(pr))
        diff = [f"{k}={po[k]!r} (official {pr[k]!r})" for k in po if k in pr and po[k] != pr[k]]
        if only_r or only_o or diff:
            parts = ([f"official-only args {only_r}"] if only_r else []) + \
                    ([f"our-only args {only_o}"] if only_o else []) + ([f"defaults {diff}"] if diff else [])
            notes.append(f"{name}: " + "; ".join(parts))
    return notes


# --------------------------------------------------------------------------- checks

def check_generator(cfg: GConfig, networks, rep: Report) -> None:
    n = cfg.name
    kw = cfg.kwargs()
    ref = seeded(1, networks.Generator, **copy.deepcopy(kw))
    ours_init = seeded(1, our_synth.Generator, **copy.deepcopy(kw))
    rep.tensors(n, "init weights (same seed)", dict(ours_init.state_dict()), dict(ref.state_dict()))

    torch.manual_seed(2)
    with torch.no_grad():                       # trained-looking weights: nothing left at its init value
        for name, p in ref.named_parameters():
            if name.endswith("noise_strength"):
                p.copy_(torch.rand([]) * 0.5 + 0.1)
            elif name.endswith(".bias") or name.endswith("const"):
                p.add_(torch.randn_like(p) * 0.3)
        ref.mapping.w_avg.copy_(torch.randn_like(ref.mapping.w_avg))
    ref_ema = copy.deepcopy(ref)
    with torch.no_grad():
        for p in ref_ema.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    ref.eval()
    ref_ema.eval()

    f = to_pickle(G=ref, G_ema=ref_ema, D=None)
    ours = load_official(f, which="G_ema")
    f.seek(0)
    ours_g = load_official(f, which="G")
    rep.exact(n, "structure (names, shapes, attrs)", structure_problems(ours, ref_ema))
    rep.tensors(n, "state dict after load_official G_ema", dict(ours.state_dict()), dict(ref_ema.state_dict()))
    rep.tensors(n, "state dict after load_official G", dict(ours_g.state_dict()), dict(ref.state_dict()))
    ref = ref_ema

    z = seeded(3, torch.randn, [BATCH, cfg.dim])
    c = torch.nn.functional.one_hot(torch.arange(BATCH) % cfg.c_dim, cfg.c_dim).float() if cfg.c_dim else None
    ws = seeded(4, torch.randn, [BATCH, ref.num_ws, cfg.dim])
    R = seeded(5, torch.randn, [BATCH, 3, cfg.res, cfg.res])

    # Mapping.
    with torch.no_grad():
        rep.tensors(n, "mapping psi=0.7", ours.mapping(z, c, truncation_psi=0.7), ref.mapping(z, c, truncation_psi=0.7))
        rep.tensors(n, "mapping psi=0.5 cutoff=2", ours.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2),
                    ref.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2))
    mo, mr = copy.deepcopy(ours.mapping).train(), copy.deepcopy(ref.mapping).train()
    with torch.no_grad():
        mo(z, c)
        mr(z, c)
    rep.tensors(n, "w_avg after a train-mode call", mo.w_avg, mr.w_avg)

    # Synthesis forward (no grad: our in-place inference path; grad: the autograd path).
    for mode in ("const", "none", "random"):
        for fused in (True, False):
            with torch.no_grad():
                o = seeded(6, ours.synthesis, ws, noise_mode=mode, fused_modconv=fused)
                r = seeded(6, ref.synthesis, ws, noise_mode=mode, fused_modconv=fused)
            rep.tensors(n, f"synthesis noise={mode} fused={fused}", o, r)
    o = ours.synthesis(ws, noise_mode="const")
    r = ref.synthesis(ws, noise_mode="const")
    rep.tensors(n, "synthesis const (grad enabled)", o, r)

    # Full path.
    with torch.no_grad():
        rep.tensors(n, "G(z,c) psi=0.7 const", ours(z, c, truncation_psi=0.7, noise_mode="const"),
                    ref(z, c, truncation_psi=0.7, noise_mode="const"))
        rep.tensors(n, "G(z,c) psi=1 random", seeded(7, ours, z, c, noise_mode="random"),
                    seeded(7, ref, z, c, noise_mode="random"))

    # Gradients through synthesis (w.r.t. ws and all synthesis parameters), both modconv paths.
    for fused in (True, False):
        wo, wr = ws.clone().requires_grad_(True), ws.clone().requires_grad_(True)
        zero_grads(ours, ref)
        (ours.synthesis(wo, noise_mode="const", fused_modconv=fused) * R).sum().backward()
        (ref.synthesis(wr, noise_mode="const", fused_modconv=fused) * R).sum().backward()
        rep.tensors(n, f"d/dws sum(img*R) fused={fused}", wo.grad, wr.grad)
        rep.tensors(n, f"d/dparams sum(img*R) fused={fused}", param_grads(ours.synthesis), param_grads(ref.synthesis))

    # Gradients through the full G (mapping lr_multiplier/gains, truncation), train-mode modconv.
    zo, zr = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    zero_grads(ours, ref)
    (ours(zo, c, truncation_psi=0.7, noise_mode="const", fused_modconv=False) * R).sum().backward()
    (ref(zr, c, truncation_psi=0.7, noise_mode="const", fused_modconv=False) * R).sum().backward()
    rep.tensors(n, "d/dz sum(G(z,c)*R)", zo.grad, zr.grad)
    rep.tensors(n, "d/dparams sum(G(z,c)*R)", param_grads(ours), param_grads(ref))

    # A bare state dict through the same loader (Generator kwargs inferred from the shapes).
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "g.pt")
        torch.save({"G_ema": ref.state_dict()}, path)
        ours_sd = load_official(path)
    probs = [f"b{res}: architecture {getattr(ours_sd.synthesis, f'b{res}').architecture!r} vs "
             f"{getattr(ref.synthesis, f'b{res}').architecture!r}" for res in ref.synthesis.block_resolutions
             if getattr(ours_sd.synthesis, f"b{res}").architecture != getattr(ref.synthesis, f"b{res}").architecture]
    probs += structure_problems(ours_sd, ref, attrs=False)
    rep.exact(n, "state-dict load: inferred structure", probs)
    inf_map = ours_sd.init_kwargs["mapping_kwargs"]
    if "lr_multiplier" in cfg.mapping and inf_map.get("lr_multiplier") != cfg.mapping["lr_multiplier"]:
        rep.note(f"{n}: bare state dict -> mapping lr_multiplier not recoverable from shapes "
                 f"(official {cfg.mapping['lr_multiplier']}, loaded with the default); mapping not compared")
    with torch.no_grad():
        o = ours_sd.synthesis(ws, noise_mode="const")
        r = ref.synthesis(ws, noise_mode="const")
    if cfg.conv_clamp is not None and cfg.conv_clamp < 1:
        rep.note(f"{n}: bare state dict -> conv_clamp inferred as None (official {cfg.conv_clamp}); "
                 f"synthesis max|diff| {float((o - r).abs().max()):.2e} (expected: the clamp is not in a state dict)")
    else:
        rep.tensors(n, "state-dict load: synthesis const", o, r)


def check_discriminator(cfg: DConfig, networks, rep: Report) -> None:
    n = cfg.name
    kw = cfg.kwargs()
    ref = seeded(11, networks.Discriminator, **copy.deepcopy(kw))
    ours_init = seeded(11, our_disc.Discriminator, **copy.deepcopy(kw))
    rep.tensors(n, "init weights (same seed)", dict(ours_init.state_dict()), dict(ref.state_dict()))
    torch.manual_seed(12)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.3)
    ref.eval()

    ours = load_official(to_pickle(G=None, G_ema=None, D=ref), which="D")
    rep.exact(n, "structure (names, shapes, attrs)", structure_problems(ours, ref))
    rep.tensors(n, "state dict after load_official D", dict(ours.state_dict()), dict(ref.state_dict()))

    img = seeded(13, torch.randn, [cfg.batch, 3, cfg.res, cfg.res])
    c = torch.nn.functional.one_hot(torch.arange(cfg.batch) % cfg.c_dim, cfg.c_dim).float() if cfg.c_dim else None
    r_out = seeded(14, torch.randn, [cfg.batch, 1])
    with torch.no_grad():
        rep.tensors(n, "D logits (no grad)", ours(img, c), ref(img, c))
    io_, ir = img.clone().requires_grad_(True), img.clone().requires_grad_(True)
    zero_grads(ours, ref)
    lo, lr = ours(io_, c), ref(ir, c)
    rep.tensors(n, "D logits (grad enabled)", lo, lr)
    (lo * r_out).sum().backward()
    (lr * r_out).sum().backward()
    rep.tensors(n, "d/dimg sum(D*r)", io_.grad, ir.grad)
    rep.tensors(n, "d/dparams sum(D*r)", param_grads(ours), param_grads(ref))


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official-src", required=True, help="checkout of NVlabs/stylegan2-ada-pytorch")
    p.add_argument("--rtol", type=float, default=1e-5, help="max allowed max|diff| / max|official| per check")
    p.add_argument("--grad-rtol", type=float, default=1e-4,
                   help="the same for the gradient rows (float32 reductions over whole feature maps, e.g. "
                        "d/d noise_strength, differ by ~1e-5 relative under mere reordering)")
    p.add_argument("--only", nargs="*", default=None, help="run only configs whose name contains one of these")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    t0 = time.time()
    networks = import_official(args.official_src)
    rep = Report(args.rtol, args.grad_rtol)
    want = lambda name: not args.only or any(s in name for s in args.only)
    for cfg in G_CONFIGS:
        if want(cfg.name):
            check_generator(cfg, networks, rep)
    for cfg in D_CONFIGS:
        if want(cfg.name):
            check_discriminator(cfg, networks, rep)
    for note in signature_notes(networks):
        rep.note("signature: " + note)
    ok = rep.print()
    print(f"({time.time() - t0:.1f} s, torch {torch.__version__}, {torch.get_num_threads()} thread)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
