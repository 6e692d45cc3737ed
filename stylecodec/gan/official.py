"""Load official StyleGAN2-ADA ``.pkl`` files without their code; save/load safe checkpoints.

An official pickle is ``{G, D, G_ema, augment_pipe, training_set_kwargs}``; every network is
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta = {type, version,
module_src, class_name, state}`` and ``state`` the module's ``__dict__`` (``_parameters``,
``_buffers``, ``_modules``, ``_init_args``, ``_init_kwargs`` ...). We read it with an
allow-listed unpickler in which that function is a stub returning a :class:`PersistentRecord`:
``module_src`` is never executed. Our own Generator/Discriminator is then rebuilt from the
recorded init kwargs and the recorded tensors are loaded strictly.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO

import torch
import torch._utils

from ..errors import StylecodecError
from ..files import atomic_torch_save
from ..safe_unpickle import AllowListUnpickler, BASIC_GLOBALS, NUMPY_GLOBALS, TORCH_GLOBALS, UnsafePickleError
from .discriminator import Discriminator
from .synthesis import Generator

__all__ = ["OfficialWeightsError", "UnsafeOfficialPickleError", "PersistentRecord", "read_official_pickle",
           "load_official", "save_checkpoint", "load_checkpoint", "infer_generator_kwargs"]

CHECKPOINT_KINDS = {"stylegan2-generator": Generator, "stylegan2-discriminator": Discriminator}
_DROPPED_KWARGS = {"channels_last", "fp16_channels_last", "fused_modconv_default"}   # memory-format / speed only
_G_ARGS = ["z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"]
_D_ARGS = ["c_dim", "img_resolution", "img_channels"]
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C   # first object of a legacy (non-zip) torch.save file


class OfficialWeightsError(StylecodecError):
    """A weights file could not be read or does not fit the StyleGAN2 networks."""


class UnsafeOfficialPickleError(OfficialWeightsError, UnsafePickleError):
    """The pickle names a global outside the allow-list; nothing from it was executed."""


@dataclass
class PersistentRecord:
    """What ``_reconstruct_persistent_obj(meta)`` would have rebuilt, as plain data."""
    class_name: str
    version: Any
    state: dict
    module_src_sha256: str


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""


def _reconstruct_persistent_obj(meta):
    if not (isinstance(meta, dict) and meta.get("type") == "class" and isinstance(meta.get("class_name"), str)
            and isinstance(meta.get("state"), dict)):
        raise OfficialWeightsError("malformed persistent-object record in the pickle")
    src = meta.get("module_src") or ""
    sha = hashlib.sha256(src.encode("utf-8", "replace")).hexdigest() if isinstance(src, str) else ""
    return PersistentRecord(meta["class_name"], meta.get("version"), dict(meta["state"]), sha)


def _load_from_bytes(b: bytes):
    """Stand-in for ``torch.storage._load_from_bytes``: a nested legacy torch.save blob."""
    try:
        return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)
    except Exception as e:
        raise OfficialWeightsError(f"bad tensor storage in the pickle: {e}") from None


@functools.lru_cache(maxsize=1)
def _allowed() -> dict:
    allowed = {**TORCH_GLOBALS(), **NUMPY_GLOBALS(), **BASIC_GLOBALS}
    allowed.update({
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.util", "EasyDict"): _EasyDict,
        ("torch.storage", "_load_from_bytes"): _load_from_bytes,
        ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,   # protocol <= 3 sets
        ("__builtin__", "set"): set, ("__builtin__", "frozenset"): frozenset,
    })
    if hasattr(torch._utils, "_rebuild_parameter_with_state"):
        allowed[("torch._utils", "_rebuild_parameter_with_state")] = torch._utils._rebuild_parameter_with_state
    return allowed


def read_official_pickle(f: BinaryIO) -> Any:
    """Unpickle with the allow-list; persistent networks come back as PersistentRecord."""
    try:
        return AllowListUnpickler(f, _allowed()).load()
    except UnsafePickleError as e:
        raise UnsafeOfficialPickleError(str(e)) from None
    except OfficialWeightsError:
        raise
    except Exception as e:  # truncated / corrupt file, wrong format
        raise OfficialWeightsError(f"cannot read the pickle ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------- records -> modules

def _plain(obj, where="init kwargs"):
    """EasyDict/numpy scalars -> plain Python, so kwargs can be checked and re-saved safely."""
    if isinstance(obj, dict):
        return {str(k): _plain(v, where) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, where) for v in obj]
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:   # numpy scalar
        return obj.item()
    raise OfficialWeightsError(f"unexpected {type(obj).__name__} in {where}")


def _record_state_dict(rec: PersistentRecord, prefix: str = "", out=None) -> "collections.OrderedDict":
    out = collections.OrderedDict() if out is None else out
    skip = set(rec.state.get("_non_persistent_buffers_set") or ())
    for key in ("_parameters", "_buffers"):
        for name, t in (rec.state.get(key) or {}).items():
            if t is not None and name not in skip:
                if not isinstance(t, torch.Tensor):
                    raise OfficialWeightsError(f"{prefix}{name} is a {type(t).__name__}, not a tensor")
                out[prefix + name] = t
    for name, sub in (rec.state.get("_modules") or {}).items():
        if isinstance(sub, PersistentRecord):
            _record_state_dict(sub, f"{prefix}{name}.", out)
        elif sub is not None:
            raise OfficialWeightsError(f"module {prefix}{name} is a {type(sub).__name__}, not a network")
    return out


def _record_kwargs(rec: PersistentRecord, arg_names: list[str]) -> dict:
    args = list(rec.state.get("_init_args") or ())
    kwargs = _plain(dict(rec.state.get("_init_kwargs") or {}))
    if len(args) > len(arg_names):
        raise OfficialWeightsError(f"{rec.class_name}: {len(args)} positional init args, expected <= {len(arg_names)}")
    kwargs.update(zip(arg_names, _plain(args)))
    return kwargs


def _normalise_g_kwargs(kw: dict, force_fp32: bool) -> dict:
    kw = dict(kw)
    syn = dict(kw.pop("synthesis_kwargs", None) or {})
    for k in [k for k in kw if k not in _G_ARGS]:   # stylegan3-repo pickles keep these at top level
        syn[k] = kw.pop(k)
    kw["synthesis_kwargs"] = {k: v for k, v in syn.items() if k not in _DROPPED_KWARGS}
    kw["mapping_kwargs"] = dict(kw.get("mapping_kwargs") or {})
    if force_fp32:
        kw["synthesis_kwargs"]["num_fp16_res"] = 0
    return kw


def _normalise_d_kwargs(kw: dict, force_fp32: bool) -> dict:
    kw = {k: v for k, v in kw.items() if k not in _DROPPED_KWARGS}
    kw["block_kwargs"] = {k: v for k, v in (kw.get("block_kwargs") or {}).items() if k not in _DROPPED_KWARGS}
    if force_fp32:
        kw["num_fp16_res"] = 0
    return kw


def _build(cls, kwargs: dict) -> torch.nn.Module:
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as e:
        raise OfficialWeightsError(f"cannot build a StyleGAN2 {cls.__name__} from {kwargs}: {e}") from None


def _load_state(net: torch.nn.Module, sd: dict, what: str) -> torch.nn.Module:
    own = net.state_dict()
    # Official filters of >= 8 taps stay 1-D (separable); ours are always 2-D: the outer product
    # is the same filter with the same gain.
    sd = {k: v[:, None] * v[None, :] if k.endswith("resample_filter") and v.ndim == 1 else v for k, v in sd.items()}
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise OfficialWeightsError(
            f"{what} does not match a StyleGAN2 {type(net).__name__} (missing {len(missing)}: "
            f"{missing[:4]}, unexpected {len(unexpected)}: {unexpected[:4]}); a StyleGAN3 or modified network?")
    bad = [f"{k} {list(sd[k].shape)} vs {list(v.shape)}" for k, v in own.items() if sd[k].shape != v.shape]
    if bad:
        raise OfficialWeightsError(f"{what}: tensor shapes differ from the rebuilt network: {bad[:4]}")
    net.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()}, strict=True)
    return net.float().eval()


def infer_generator_kwargs(sd: dict) -> dict:
    """Generator init kwargs from the tensor shapes of a plain state dict (conv_clamp: None; the
    low-pass filter from the stored filter buffers)."""
    try:
        fcs = sorted(int(k[len("mapping.fc"):].split(".")[0]) for k in sd if k.startswith("mapping.fc") and k.endswith(".weight"))
        res = sorted(int(k.split(".")[1][1:]) for k in sd if k.startswith("synthesis.b") and k.endswith(".conv1.weight"))
        ch = {r: sd[f"synthesis.b{r}.conv1.weight"].shape[0] for r in res}
        top, cmax = res[-1], max(ch.values())
        base = ch[top] * top if ch[top] < cmax else cmax * top
        if any(min(base // r, cmax) != c for r, c in ch.items()):
            raise OfficialWeightsError(f"channel widths {ch} do not follow min(channel_base // res, channel_max)")
        arch = "skip" if all(f"synthesis.b{r}.torgb.weight" in sd for r in res) else (
            "resnet" if f"synthesis.b{top}.skip.weight" in sd else "orig")
        c_dim = sd["mapping.embed.weight"].shape[1] if "mapping.embed.weight" in sd else 0
        embed = sd["mapping.embed.weight"].shape[0] if c_dim else 0
        syn = dict(channel_base=base, channel_max=cmax, architecture=arch,
                   use_noise=f"synthesis.b{top}.conv1.noise_const" in sd)
        f = sd[f"synthesis.b{top}.resample_filter"].double()      # 1-D taps, or their outer product
        taps = f if f.ndim == 1 else f.sum(1)
        taps = taps / taps.sum()
        if taps.numel() != 4 or not torch.allclose(taps, torch.tensor([1, 3, 3, 1], dtype=torch.float64) / 8):
            syn["resample_filter"] = taps.tolist()
        return dict(z_dim=sd["mapping.fc0.weight"].shape[1] - embed, c_dim=c_dim,
                    w_dim=sd[f"mapping.fc{fcs[-1]}.weight"].shape[0], img_resolution=top,
                    img_channels=sd[f"synthesis.b{top}.torgb.weight"].shape[0],
                    mapping_kwargs=dict(num_layers=len(fcs), layer_features=sd["mapping.fc0.weight"].shape[0],
                                        embed_features=embed or None),
                    synthesis_kwargs=syn)
    except (KeyError, IndexError, ValueError) as e:
        raise OfficialWeightsError(f"not a StyleGAN2 generator state dict (cannot infer its shape: {e})") from None


# --------------------------------------------------------------------------- public entry points

def _open(path_or_file):
    if isinstance(path_or_file, (str, os.PathLike)):
        if not os.path.isfile(path_or_file):
            raise OfficialWeightsError(f"no such file: {os.fspath(path_or_file)}")
        with open(path_or_file, "rb") as fh:
            return io.BytesIO(fh.read())
    data = path_or_file.read()
    return io.BytesIO(data)


def load_official(path_or_file, which: str = "G_ema", force_fp32: bool = True,
                  init_kwargs: dict | None = None) -> Generator | Discriminator:
    """Read ``which`` ('G_ema', 'G' or 'D') from an official pickle, our checkpoint or a state dict.

    force_fp32: rebuild with ``num_fp16_res=0`` (default; CPU runs fp32 anyway).
    init_kwargs: constructor kwargs for a plain state dict (default: inferred, Generator only).
    Returns the network in eval mode on CPU. Raises OfficialWeightsError (UnsafeOfficialPickleError
    when the pickle names anything outside the allow-list).
    """
    if which not in ("G_ema", "G", "D"):
        raise OfficialWeightsError(f"which must be 'G_ema', 'G' or 'D', not {which!r}")
    f = _open(path_or_file)
    if zipfile.is_zipfile(f):
        f.seek(0)
        return _from_torch_file(f, which, init_kwargs)
    f.seek(0)
    data = read_official_pickle(f)
    if isinstance(data, int) and data == _TORCH_MAGIC:  # legacy torch.save file
        f.seek(0)
        return _from_torch_file(f, which, init_kwargs)
    if not isinstance(data, dict) or not any(isinstance(v, PersistentRecord) for v in data.values()):
        raise OfficialWeightsError("not a StyleGAN2-ADA network pickle (no persistent networks inside)")
    rec = data.get(which)
    if not isinstance(rec, PersistentRecord):
        raise OfficialWeightsError(f"the pickle has no network {which!r} (it has {sorted(map(str, data))})")
    want = "Discriminator" if which == "D" else "Generator"
    if rec.class_name != want:
        raise OfficialWeightsError(f"{which} is a {rec.class_name!r}, expected {want!r}")
    if want == "Generator":
        kwargs = _normalise_g_kwargs(_record_kwargs(rec, _G_ARGS), force_fp32)
    else:
        kwargs = _normalise_d_kwargs(_record_kwargs(rec, _D_ARGS), force_fp32)
    net = _build(Generator if want == "Generator" else Discriminator, kwargs)
    return _load_state(net, _record_state_dict(rec), f"pickle network {which!r}")


def _from_torch_file(f, which, init_kwargs):
    try:
        obj = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:
        raise OfficialWeightsError(f"cannot read the torch file safely ({type(e).__name__}: {e})") from None
    if _is_checkpoint(obj):
        return _from_checkpoint(obj)
    if isinstance(obj, dict) and isinstance(obj.get(which), dict):   # {'G_ema': state_dict, ...}
        obj = obj[which]
    if not (isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())):
        raise OfficialWeightsError("torch file is neither a stylecodec checkpoint nor a state dict")
    if init_kwargs is not None:
        cls = Discriminator if which == "D" else Generator
        return _load_state(_build(cls, dict(init_kwargs)), obj, "state dict")
    if which == "D":
        raise OfficialWeightsError("a bare discriminator state dict needs init_kwargs")
    return _load_state(_build(Generator, infer_generator_kwargs(obj)), obj, "state dict")


def _is_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("kind"), str) and obj["kind"] in CHECKPOINT_KINDS


def _from_checkpoint(ck: dict):
    cls = CHECKPOINT_KINDS[ck["kind"]]
    if not isinstance(ck.get("init_kwargs"), dict) or not isinstance(ck.get("state_dict"), dict):
        raise OfficialWeightsError("checkpoint lacks init_kwargs/state_dict")
    return _load_state(_build(cls, ck["init_kwargs"]), ck["state_dict"], "checkpoint")


def save_checkpoint(net: Generator | Discriminator, path) -> None:
    """Write ``{'kind', 'format_version', 'init_kwargs', 'state_dict'}`` (weights_only-safe), atomically."""
    kind = {Generator: "stylegan2-generator", Discriminator: "stylegan2-discriminator"}.get(type(net))
    if kind is None:
        raise TypeError(f"save_checkpoint wants a Generator or Discriminator, not {type(net).__name__}")
    ck = {"kind": kind, "format_version": 1, "init_kwargs": _plain(net.init_kwargs),
          "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}}
    atomic_torch_save(ck, path)


def load_checkpoint(path_or_file) -> Generator | Discriminator:
    """Read a file written by :func:`save_checkpoint` (eval mode, CPU)."""
    f = _open(path_or_file)
    try:
        ck = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:
        raise OfficialWeightsError(f"not a stylecodec checkpoint ({type(e).__name__}: {e})") from None
    if not _is_checkpoint(ck):
        raise OfficialWeightsError("not a stylecodec GAN checkpoint (no known 'kind' entry)")
    return _from_checkpoint(ck)
