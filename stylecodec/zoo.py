"""The model registry: names -> checkpoint files, and the codec checkpoint format.

Names. ``REGISTRY`` maps a name to a checkpoint file name, and optionally a refiner weights file
loaded onto it (:class:`RegistryEntry`); :func:`model_path` looks for files, in order, in
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
     "fingerprint": int,                 # stream fingerprint (u16): bitstream.fingerprint of state_dict as
                                         # stored, without the model's PIXEL_ONLY_PREFIXES (the refiner)
     "weights_sha256": str,              # optional (absent in older files): bitstream.model_digest of all of
                                         # state_dict, hex: checks the pixel-only weights too and keys pixel caches
     "meta": {...},                      # training record: plain str/int/float/bool/None/list/dict
     "heads": {...}}                     # optional analysis heads, outside the fingerprinted weights
                                         # (stylecodec.analysis.heads; tagged with the codec fingerprint)

Loading upcasts to float32, so the loaded model's fingerprint equals the stored one; a
mismatch means a damaged file. The stream fingerprint leaves out weights that only post-process
decoded pixels (a machine-first model's refiner): a retrained refiner reads every stream written
before it; ``weights_sha256`` tells such models apart (pixel metrics, caches: ``Codec.weights_id``).
Streams are made by models as loaded: a model still in training memory has another fingerprint if its checkpoint stores float16.

Analysis heads (:class:`~stylecodec.analysis.heads.AnalysisHeads`) live in the checkpoint under
the top-level ``"heads"`` entry, next to (never inside) the fingerprinted ``state_dict``, so adding
them keeps the codec's fingerprint and its streams valid::

    ck["heads"] = {"format": "stylecodec-heads", "version": 1, "config": {...},
                   "state_dict": {...}, "codec_fingerprint": u16, "meta": {...}}

``codec_fingerprint`` names the codec whose ŷ_basic the heads were trained on; heads for another
codec are refused. :func:`load` returns a :class:`LoadedModel` record (the networks, fingerprint,
training record, source file and the heads entry); :func:`save_model` writes a heads entry only
when the saved weights still have the fingerprint it was trained for (otherwise the heads would
read another codec's ŷ_basic: dropped with a warning; retrain them with ``stylecodec train heads``).
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from .analysis.heads import AnalysisHeads, HeadsError
from .assets.fetch import sha256_file
from .bitstream import model_digest, model_digests, stream_skip
from .errors import StylecodecError
from .files import atomic_torch_save
from .machine_first import KIND as MACHINE_FIRST, MachineFirstModel
from .model import StyleCodecModel, make_config
from .paths import cache_root

__all__ = ["REGISTRY", "RegistryEntry", "FORMAT", "VERSION", "HEADS_FORMAT", "HEADS_VERSION", "ModelError", "ModelNotFoundError",
           "LoadedModel", "model_path", "save_model", "load", "build_model", "read_checkpoint", "search_dirs", "heads_checkpoint",
           "heads_from_entry", "load_heads", "save_heads_into"]

FORMAT, VERSION = "stylecodec-model", 1
HEADS_FORMAT, HEADS_VERSION = "stylecodec-heads", 1


@dataclass(frozen=True)
class RegistryEntry:
    """What a model name loads: a codec checkpoint, and optionally a refiner weights file put onto it."""

    checkpoint: str                      # codec checkpoint file name (found in search_dirs())
    refiner: str | None = None           # refiner weights file (stylecodec.refiner_weights): pixels only
    refiner_sha256: str | None = None    # that file's sha256, so that a name always makes the same pixels


# codec 0xe9ac with the refiner of leg g2qf at 228,000 images, weight average (issue 17); the 168k refiner before it:
# `git show 8c61c80:pretrained/refiner_g2qf_168k.pt`
_REFINED_228K = RegistryEntry("default.pt", "refiner_g2qf_228k.pt",
                              "0a9be3691a692fe2a7b7586b815e0c0e1a2ba527241550a55ad771ce62dde240")
REGISTRY: dict[str, RegistryEntry] = {
    "default": _REFINED_228K,                            # the shipped default
    "default-linear": RegistryEntry("default.pt"),       # the same codec decoding to eigenfaces alone (faster)
    "g2qf228k": _REFINED_228K,                           # the same entry: the name in issue 17's commands
}
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
    file = REGISTRY[name].checkpoint
    found = _find(file)
    if found is not None:
        return found
    where = ", ".join(str(d) for d in search_dirs())
    if name == "default":
        raise ModelNotFoundError(
            f"the default model has not been trained/shipped yet (no {file} in {where}). "
            f"Train one with `stylecodec train codec` (see `stylecodec train --help`), save it with "
            f"stylecodec.zoo.save_model to pretrained/{file}, or pass --model PATH")
    raise ModelNotFoundError(f"model {name!r} not found (looked for {file} in {where})")


def _find(file: str) -> Path | None:
    """``file`` in the first of :func:`search_dirs` that has it."""
    return next((d / file for d in search_dirs() if (d / file).is_file()), None)


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


def _stored_state(model: StyleCodecModel | MachineFirstModel, storage: str) -> dict[str, torch.Tensor]:
    prefixes = model.fp16_prefixes() if isinstance(model, MachineFirstModel) else _FP16_PREFIXES
    sd = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu").contiguous().clone()
        if (storage == "fp16" and v.is_floating_point() and k.startswith(prefixes)
                and (v.numel() == 0 or float(v.abs().max()) <= _FP16_MAX)):
            v = v.to(torch.float16)
        sd[k] = v
    return sd


def save_model(model: StyleCodecModel, path: str | os.PathLike, meta: Mapping | None = None,
               storage: str = "fp32", heads: Mapping | AnalysisHeads | None = None) -> int:
    """Write ``model`` atomically (tmp + rename); returns its fingerprint as loaded.
    ``storage="fp16"`` halves G and E (≈ half the file); the rest stays float32.
    ``heads``: :class:`AnalysisHeads` trained on these weights (tagged with their fingerprint here;
    its ``.meta`` goes along), or a ``ck["heads"]`` entry (e.g. :attr:`LoadedModel.heads_entry`),
    kept only if its ``codec_fingerprint`` equals the saved fingerprint."""
    if storage not in ("fp32", "fp16"):
        raise ValueError(f'storage must be "fp32" or "fp16", got {storage!r}')
    sd = _stored_state(model, storage)
    stream, weights = model_digests(model, sd)
    fp = int.from_bytes(stream[:2], "big")
    ck = {"format": FORMAT, "version": VERSION, "config": _plain(model.config, "config"), "state_dict": sd,
          "fingerprint": fp, "weights_sha256": weights.hex(), "meta": _plain(dict(meta or {}))}
    if isinstance(heads, AnalysisHeads):
        heads = heads_checkpoint(heads, fp, heads.meta)
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


@dataclass
class LoadedModel:
    """A codec model as read from its checkpoint by :func:`load`."""

    model: StyleCodecModel          # the networks, eval mode, on the device asked for
    fingerprint: int                # stream fingerprint of the weights as loaded (u16; pixel-only weights left out)
    meta: dict                      # the training record (plain values)
    source: Path                    # the checkpoint file
    heads_entry: dict | None        # ck["heads"] as stored (analysis heads and the codec they belong to), or None
    digest: bytes                   # stream digest of the weights as loaded (fingerprint: its first 2 bytes)
    weights_digest: bytes           # bitstream.model_digest of all the weights (refiner included)


    def heads(self) -> AnalysisHeads:
        """The analysis heads stored with the model (eval mode, CPU); raises :class:`HeadsError` when
        there are none or they were trained for another codec."""
        if self.heads_entry is None:
            raise HeadsError(_no_heads(self.source))
        return heads_from_entry(self.heads_entry, str(self.source), self.fingerprint)


def build_model(config: Mapping) -> StyleCodecModel | MachineFirstModel:
    """The one place a model is built from its config: ``config["kind"]`` "machine-first" ->
    :class:`~stylecodec.machine_first.MachineFirstModel`; no kind (the W+ codec) ->
    :class:`~stylecodec.model.StyleCodecModel`."""
    if config.get("kind") == MACHINE_FIRST:
        return MachineFirstModel(config)
    return StyleCodecModel(make_config(config))


def load(name_or_path: str | os.PathLike = "default", device: str | torch.device = "cpu") -> LoadedModel:
    """Build and load a model (eval mode) from a registry name or a checkpoint path."""
    path = model_path(name_or_path)
    ck = read_checkpoint(path)
    try:
        model = build_model(ck["config"])
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path}: invalid model config ({type(e).__name__}: {e})") from None
    try:
        model.load_state_dict(ck["state_dict"], strict=True)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path}: weights do not fit the config ({str(e).splitlines()[0]})") from None
    digest, weights = model_digests(model)
    fp = int.from_bytes(digest[:2], "big")
    recorded = ck["fingerprint"]
    # files written before pixel-only weights left the stream key recorded the fingerprint of all weights
    legacy = "weights_sha256" not in ck and stream_skip(model) and recorded == int.from_bytes(weights[:2], "big")
    if fp != recorded and not legacy:
        raise ModelError(f"{path}: damaged weights (fingerprint 0x{fp:04x}, recorded 0x{recorded:04x})")
    if ck.get("weights_sha256", weights.hex()) != weights.hex():
        raise ModelError(f"{path}: damaged weights (sha256 {weights.hex()[:12]}…, recorded "
                         f"{str(ck['weights_sha256'])[:12]}…)")
    meta = ck["meta"]
    entry = REGISTRY.get(os.fspath(name_or_path)) if not _is_path(os.fspath(name_or_path)) else None
    if entry is not None and entry.refiner is not None:
        model, meta = _put_refiner(model, os.fspath(name_or_path), entry, meta)
        weights = model_digest(model.state_dict())      # the stream digest stays: the refiner is outside it
    return LoadedModel(model.to(device).eval(), fp, meta, Path(path), ck.get("heads"), digest, weights)


def _put_refiner(model: MachineFirstModel, name: str, entry: RegistryEntry, meta: dict):
    """``model`` with the refiner of registry ``entry`` loaded onto it, and the meta with its record."""
    from .refiner_weights import load_refiner_weights, read_refiner_weights, with_refiner

    path = _find(entry.refiner)
    if path is None:
        where = ", ".join(str(d) for d in search_dirs())
        raise ModelNotFoundError(f"model {name!r} is {entry.checkpoint} + the refiner {entry.refiner}, which is not in "
                                 f"{where}; `default-linear` is the codec without it")
    if entry.refiner_sha256 is not None and sha256_file(path) != entry.refiner_sha256:
        raise ModelError(f"{path}: damaged refiner weights (sha256 differs from the registry's)")
    blob = read_refiner_weights(path)
    if blob is None:
        raise ModelError(f"{path} is not a refiner weights file")
    try:
        refined = with_refiner(model, blob["widths"])
        record = load_refiner_weights(refined, path, blob)
    except StylecodecError as e:
        raise ModelError(str(e)) from None
    return refined.eval(), {**meta, "refiner": {"file": entry.refiner, **record}}


# ---------------------------------------------------------------- analysis heads in a checkpoint
def _no_heads(path) -> str:
    return (f"model {path} has no analysis heads; train them with "
            f"`stylecodec train heads --model {path} --out RUN_DIR` and use RUN_DIR/model.pt")


def heads_checkpoint(heads: AnalysisHeads, codec_fingerprint: int, meta: Mapping | None = None) -> dict:
    """The ``ck["heads"]`` entry for ``heads`` trained on the codec with ``codec_fingerprint``."""
    sd = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in heads.state_dict().items()}
    try:
        plain_meta = json.loads(json.dumps(dict(meta or {})))
    except (TypeError, ValueError) as e:
        raise TypeError(f"heads meta must be plain JSON-able values: {e}") from None
    return {"format": HEADS_FORMAT, "version": HEADS_VERSION, "config": dict(heads.config), "state_dict": sd,
            "codec_fingerprint": int(codec_fingerprint), "meta": plain_meta}


def heads_from_entry(entry: Mapping, where: str, expected_fingerprint: int | None = None) -> AnalysisHeads:
    """Build heads (eval mode) from a ``ck["heads"]`` entry; raises :class:`HeadsError`."""
    if not isinstance(entry, Mapping) or entry.get("format") != HEADS_FORMAT:
        raise HeadsError(f"{where}: the 'heads' entry is not a stylecodec heads record")
    if entry.get("version") != HEADS_VERSION:
        raise HeadsError(f"{where}: heads version {entry.get('version')!r} is not supported (this reads "
                         f"{HEADS_VERSION})")
    fp = entry.get("codec_fingerprint")
    if expected_fingerprint is not None and fp != int(expected_fingerprint):
        raise HeadsError(f"{where}: the analysis heads were trained for codec 0x{int(fp or 0):04x}, this codec is "
                         f"0x{int(expected_fingerprint):04x}; retrain them with `stylecodec train heads`")
    try:
        heads = AnalysisHeads(**entry["config"])
        heads.load_state_dict(entry["state_dict"], strict=True)
    except Exception as e:  # noqa: BLE001
        raise HeadsError(f"{where}: damaged analysis heads ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    heads.meta = dict(entry.get("meta", {}))
    return heads.eval()


def load_heads(name_or_path: str | os.PathLike, expected_fingerprint: int | None = None) -> AnalysisHeads:
    """The analysis heads stored in a model checkpoint (registry name or path)."""
    path = model_path(name_or_path)
    ck = read_checkpoint(path)
    if "heads" not in ck:
        raise HeadsError(_no_heads(path))
    return heads_from_entry(ck["heads"], str(path), expected_fingerprint)


def save_heads_into(checkpoint: str | os.PathLike, heads: AnalysisHeads, out_path: str | os.PathLike | None = None,
                    meta: Mapping | None = None) -> int:
    """Write the model checkpoint file ``checkpoint`` with ``heads`` added (replacing any) to ``out_path``
    (default: in place), atomically. The codec weights and fingerprint are copied unchanged; the
    heads are tagged with that fingerprint. Returns it."""
    ck = read_checkpoint(checkpoint)
    ck["heads"] = heads_checkpoint(heads, ck["fingerprint"], meta)
    atomic_torch_save(ck, out_path if out_path is not None else checkpoint)
    return ck["fingerprint"]
