"""Refiner weights files: a machine-first model's refiner alone, for the codec it was trained on.

A file (``torch.save`` of plain containers; read with ``weights_only=True``)::

    {"kind": "stylecodec.refiner-weights", "version": 1,
     "base_fingerprint": u16,            # stream fingerprint of the codec it refines (refiner left out)
     "widths": [int, ...],               # Refiner widths (stylecodec.refiner)
     "state_dict": {name: float16},      # Refiner.state_dict()
     "meta": {...}}                      # training record (images_seen, cpu_hours, ...)

The refiner only post-processes decoded pixels and is left out of the stream key, so a codec plus any
refiner trained for it reads the same streams: the registry composes ``default`` from ``default.pt`` and
a refiner file (:data:`stylecodec.zoo.REGISTRY`), ``stylecodec train refiner --init-refiner`` starts from one.
"""
from __future__ import annotations

import os

import torch

from .bitstream import model_digests
from .errors import StylecodecError
from .files import write_atomic
from .machine_first import MachineFirstModel

__all__ = ["WEIGHTS_KIND", "save_refiner_weights", "read_refiner_weights", "is_refiner_file",
           "load_refiner_weights", "with_refiner"]

WEIGHTS_KIND = "stylecodec.refiner-weights"


def _base_fingerprint(model: MachineFirstModel) -> int:
    """The stream fingerprint of ``model`` (its refiner left out: the codec a refiner decodes for)."""
    return int.from_bytes(model_digests(model)[0][:2], "big")


def save_refiner_weights(model: MachineFirstModel, path, meta: dict) -> None:
    """Write ``model``'s refiner alone (float16, a few MB instead of the whole model), tagged with the base
    model's fingerprint; ``--init-refiner PATH`` starts a run from it (Adam's state is not kept)."""
    sd = {k: v.detach().to(torch.float16).clone() for k, v in model.refiner.state_dict().items()}
    blob = {"kind": WEIGHTS_KIND, "version": 1, "base_fingerprint": _base_fingerprint(model),
            "widths": list(model.config["refiner"]["widths"]), "state_dict": sd, "meta": dict(meta)}

    def _w(tmp: str) -> None:
        torch.save(blob, tmp)
    write_atomic(os.fspath(path), _w)


def read_refiner_weights(path) -> dict | None:
    """The contents of a :func:`save_refiner_weights` file, or None when ``path`` is anything else."""
    try:
        blob = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  not a torch file, or a model checkpoint with other contents
        return None
    return blob if isinstance(blob, dict) and blob.get("kind") == WEIGHTS_KIND else None


def is_refiner_file(path) -> bool:
    return read_refiner_weights(path) is not None


def load_refiner_weights(model: MachineFirstModel, path, blob: dict | None = None) -> dict:
    """Load a :func:`save_refiner_weights` file (``blob``: its contents, if already read) into ``model``'s refiner;
    returns its meta. StylecodecError when it was trained for another base model (fingerprint) or other widths."""
    blob = read_refiner_weights(path) if blob is None else blob
    if blob is None or blob.get("version") != 1:
        raise StylecodecError(f"{path} is not a refiner weights file")
    base = _base_fingerprint(model)
    if blob["base_fingerprint"] != base:
        raise StylecodecError(f"{path} was trained for model 0x{blob['base_fingerprint']:04x}, not 0x{base:04x}")
    if list(blob["widths"]) != list(model.config["refiner"]["widths"]):
        raise StylecodecError(f"{path}: refiner widths {blob['widths']}, the run has {model.config['refiner']['widths']}")
    try:
        model.refiner.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    except Exception as e:  # noqa: BLE001
        raise StylecodecError(f"{path}: damaged refiner weights ({str(e).splitlines()[0]})") from None
    return dict(blob["meta"])


def with_refiner(base: MachineFirstModel, widths) -> MachineFirstModel:
    """A copy of ``base`` with a fresh refiner of ``widths`` (its output starts at zero: decodes as ``base``)."""
    if not isinstance(base, MachineFirstModel):
        raise StylecodecError("a refiner needs a machine-first model")
    model = MachineFirstModel({**base.config, "refiner": {"widths": [int(w) for w in widths]}})
    codec_weights = {k: v for k, v in base.state_dict().items() if not k.startswith(model.PIXEL_ONLY_PREFIXES)}
    missing, unexpected = model.load_state_dict(codec_weights, strict=False)
    assert not unexpected and all(k.startswith(model.PIXEL_ONLY_PREFIXES) for k in missing), (missing, unexpected)
    if "face_features" in vars(base):              # an instance override (tests), not the method
        model.face_features = base.face_features
    return model.train(base.training)
