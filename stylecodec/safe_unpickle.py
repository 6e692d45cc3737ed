"""An allow-listed unpickler: reads pickles of tensors/arrays without running their code.

Every global a pickle names is looked up in an explicit allow-list; anything else
(``os.system``, ``builtins.eval``, an unknown class ...) raises :class:`UnsafePickleError`
before it is called. Used for official StyleGAN2-ADA pickles and third-party weights.
"""
from __future__ import annotations

import collections
import io
import pickle
from typing import Any, BinaryIO, Callable, Mapping

import numpy as np
import torch
import torch._utils

__all__ = ["UnsafePickleError", "AllowListUnpickler", "load", "TORCH_GLOBALS", "NUMPY_GLOBALS"]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside the allow-list (nothing from it was executed)."""


def _torch_globals() -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch", "Size"): torch.Size,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    }
    for name in ("FloatStorage", "HalfStorage", "DoubleStorage", "BFloat16Storage", "LongStorage",
                 "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage"):
        out[("torch", name)] = getattr(torch, name)
    for dt in ("float32", "float16", "float64", "bfloat16", "int64", "int32", "int16", "int8",
               "uint8", "bool"):
        out[("torch", dt)] = getattr(torch, dt)
    return out


def _numpy_globals() -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {("numpy", "dtype"): np.dtype, ("numpy", "ndarray"): np.ndarray}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = np.core.multiarray._reconstruct
        out[(mod, "scalar")] = np.core.multiarray.scalar
    return out


TORCH_GLOBALS: Callable[[], dict] = _torch_globals
NUMPY_GLOBALS: Callable[[], dict] = _numpy_globals
BASIC_GLOBALS = {("collections", "OrderedDict"): collections.OrderedDict}


class AllowListUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only returns allow-listed objects.

    allowed:    {(module, qualname): object}; the object is returned in place of the global.
    persistent: optional ``persistent_load`` callback (torch zip checkpoints use one).
    """

    def __init__(self, file: BinaryIO, allowed: Mapping[tuple[str, str], Any],
                 persistent: Callable[[Any], Any] | None = None):
        super().__init__(file)
        self._allowed = dict(allowed)
        if persistent is not None:
            self.persistent_load = persistent

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global '{module}.{name}': not in the allow-list "
                f"(the pickle may contain code; nothing was executed)") from None


def load(data: bytes | BinaryIO, allowed: Mapping[tuple[str, str], Any]) -> Any:
    """Unpickle ``data`` (bytes or a binary file) with the given allow-list."""
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return AllowListUnpickler(f, allowed).load()
