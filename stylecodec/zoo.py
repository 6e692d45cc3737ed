"""The model registry: names -> checkpoint files, and the codec checkpoint format.

Names. ``REGISTRY`` maps a name to a file name; :func:`model_path` looks for it, in order, in
``$STYLECODEC_MODEL_DIR`` (if set), ``<repository>/pretrained/`` (next to the ``stylecodec``
package: a clean clone and ``pip install -e .`` both see it) and ``<cache>/models/``
(``$STYLECODEC_CACHE`` or ``~/.cache/stylecodec``; for non-editable installs, which do not
carry ``pretrained/``). Anything containing a path separator, ending in ``.pt`` or naming an
existing file is a path.

Checkpoint (``torch.save`` of plain containers and tensors; read with ``weights_only=True``)::

    {"format": "stylecodec-model", "version": 1,
     "config": StyleCodecModel config (plain dict),
     "state_dict": {name: tensor},       # G.* and E.* floats may be float16 (storage="fp16");
                                         # LSET, transforms and gains always float32
     "fingerprint": int,                 # bitstream.fingerprint(state_dict) as stored (u16)
     "meta": {...},                      # training record: plain str/int/float/bool/None/list/dict
     "heads": {...}}                     # optional analysis heads, outside the fingerprinted weights
                                         # (stylecodec.analysis.heads; tagged with the codec fingerprint)

Loading upcasts to float32, so the loaded model's fingerprint equals the stored one; a
mismatch means a damaged file. Streams are made by models as loaded: a model still in
training memory has another fingerprint if its checkpoint stores float16.

Heads survive a load/save round trip: :func:`load_model` keeps the entry on the model
(``model.heads_entry``) and :func:`save_model` writes it back when the saved weights still have
the fingerprint the heads were trained for; when they do not, the heads would read another
codec's ŷ_basic, so they are dropped with a warning (retrain them with ``stylecodec train heads``).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from .bitstream import fingerprint
from .errors import StylecodecError
from .files import atomic_torch_save
from .model import StyleCodecModel, make_config
from .paths import cache_root

__all__ = ["REGISTRY", "FORMAT", "VERSION", "ModelError", "ModelNotFoundError", "model_path", "save_model",
           "load_model", "read_checkpoint", "search_dirs", "atomic_torch_save"]

FORMAT, VERSION = "stylecodec-model", 1
REGISTRY: dict[str, str] = {"default": "default.pt"}
_FP16_PREFIXES = ("G.", "E.")
_FP16_MAX = 65504.0


class ModelError(StylecodecError):
    """A model checkpoint is missing, unreadable, damaged or of an unknown format."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """No checkpoint file for a model name or path."""


def search_dirs() -> list[Path]:
    """Folders searched for registry names, in order."""
    dirs = [Path(os.environ["STYLECODEC_MODEL_DIR"])] if os.environ.get("STYLECODEC_MODEL_DIR") else []
    dirs.append(Path(__file__).resolve().parent.parent / "pretrained")
    dirs.append(cache_root() / "models")
    return dirs


def _is_path(name: str) -> bool:
    return os.sep in name or (os.altsep or os.sep) in name or name.endswith(".pt") or os.path.isfile(name)


def model_path(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint file of a registry name or a path; raises :class:`ModelNotFoundError`."""
    name = os.fspath(name_or_path)
    if _is_path(name):
        if not os.path.isfile(name):
            raise ModelNotFoundError(f"model file {name} does not exist")
        return Path(name)
    if name not in REGISTRY:
        raise ModelNotFoundError(f"unknown model name {name!r} (known: {', '.join(sorted(REGISTRY))}); "
                                 f"pass a checkpoint path instead")
    for d in search_dirs():
        if (d / REGISTRY[name]).is_file():
            return d / REGISTRY[name]
    where = ", ".join(str(d) for d in search_dirs())
    if name == "default":
        raise ModelNotFoundError(
            f"the default model has not been trained/shipped yet (no {REGISTRY[name]} in {where}). "
            f"Train one with `stylecodec train codec` (see `stylecodec train --help`), save it with "
            f"stylecodec.zoo.save_model to pretrained/{REGISTRY[name]}, or pass --model PATH")
    raise ModelNotFoundError(f"model {name!r} not found (looked for {REGISTRY[name]} in {where})")


def _plain(obj: Any, where: str = "meta") -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_plain(v, where) for v in obj]
    if isinstance(obj, Mapping):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"{where}: dict keys must be str")
        return {k: _plain(v, f"{where}.{k}") for k, v in obj.items()}
    raise TypeError(f"{where}: {type(obj).__name__} is not a plain value (str/int/float/bool/None/list/dict)")


def _stored_state(model: StyleCodecModel, storage: str) -> dict[str, torch.Tensor]:
    sd = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu").contiguous().clone()
        if (storage == "fp16" and v.is_floating_point() and k.startswith(_FP16_PREFIXES)
                and (v.numel() == 0 or float(v.abs().max()) <= _FP16_MAX)):
            v = v.to(torch.float16)
        sd[k] = v
    return sd


def save_model(model: StyleCodecModel, path: str | os.PathLike, meta: Mapping | None = None,
               storage: str = "fp32", heads: Mapping | torch.nn.Module | None = None) -> int:
    """Write ``model`` atomically (tmp + rename); returns its fingerprint as loaded.
    ``storage="fp16"`` halves G and E (≈ half the file); the rest stays float32.
    ``heads``: an :class:`~stylecodec.analysis.heads.AnalysisHeads` trained on these weights (tagged
    with their fingerprint here; its ``.meta`` goes along), or a ``ck["heads"]`` entry, kept only if
    its ``codec_fingerprint`` equals the saved fingerprint. Default: ``model.heads_entry`` (the heads
    the model was loaded with), under the same rule."""
    if storage not in ("fp32", "fp16"):
        raise ValueError(f'storage must be "fp32" or "fp16", got {storage!r}')
    sd = _stored_state(model, storage)
    fp = fingerprint(sd)
    ck = {"format": FORMAT, "version": VERSION, "config": _plain(model.config, "config"), "state_dict": sd,
          "fingerprint": fp, "meta": _plain(dict(meta or {}))}
    heads = heads if heads is not None else getattr(model, "heads_entry", None)
    if isinstance(heads, torch.nn.Module):
        from .analysis.heads import heads_checkpoint

        heads = heads_checkpoint(heads, fp, getattr(heads, "meta", None))
    if heads is not None:
        theirs = heads.get("codec_fingerprint") if isinstance(heads, Mapping) else None
        if theirs == fp:
            ck["heads"] = dict(heads)
        else:
            warnings.warn(f"{os.fspath(path)}: analysis heads not saved: they were trained for codec "
                          f"0x{int(theirs or 0):04x}, these weights are 0x{fp:04x}; retrain them with "
                          f"`stylecodec train heads`", stacklevel=2)
    atomic_torch_save(ck, path)
    return fp


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict of a file, validated; raises :class:`ModelError`."""
    try:
        ck = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelNotFoundError(f"model file {path} does not exist") from None
    except Exception as e:  # noqa: BLE001  torch raises many types for damaged files
        raise ModelError(f"cannot read model {path}: damaged or not a checkpoint "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ModelError(f"{path} is not a stylecodec model checkpoint (format {ck.get('format') if isinstance(ck, dict) else type(ck).__name__!r})")
    if ck.get("version") != VERSION:
        raise ModelError(f"{path}: checkpoint version {ck.get('version')!r} is not supported (this reads {VERSION})")
    for key, typ in (("config", dict), ("state_dict", dict), ("fingerprint", int), ("meta", dict)):
        if not isinstance(ck.get(key), typ):
            raise ModelError(f"{path}: checkpoint entry {key!r} is missing or not a {typ.__name__}")
    return ck


def load_model(name_or_path: str | os.PathLike = "default", device: str | torch.device = "cpu") -> StyleCodecModel:
    """Build and load a model (eval mode) from a registry name or a checkpoint path.
    The result carries ``.meta`` (training record), ``.fingerprint`` and ``.source`` (path)."""
    path = model_path(name_or_path)
    ck = read_checkpoint(path)
    try:
        model = StyleCodecModel(make_config(ck["config"]))
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path}: invalid model config ({type(e).__name__}: {e})") from None
    try:
        model.load_state_dict(ck["state_dict"], strict=True)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path}: weights do not fit the config ({str(e).splitlines()[0]})") from None
    fp = fingerprint(model.state_dict())
    if fp != ck["fingerprint"]:
        raise ModelError(f"{path}: damaged weights (fingerprint 0x{fp:04x}, recorded 0x{ck['fingerprint']:04x})")
    model.meta, model.fingerprint, model.source = ck["meta"], fp, str(path)
    model.heads_entry = ck.get("heads")
    return model.to(device).eval()
