"""LayerSplit: which W+ indices form the basic, middle and enhanced layers of the bitstream.

A StyleGAN2 generator of resolution R takes ``num_ws = 2*log2(R) - 2`` style vectors
(W+ indices). The codec groups them into three contiguous layers, coded in order::

    basic    = w[0:a]   coarse styles (4²–8² blocks): pose, face shape   -> machines
    middle   = w[a:b]   16²–32² blocks: features, identity               -> recognisable face
    enhanced = w[b:n]   64² and up: texture, colour                      -> faithful face

:meth:`LayerSplit.default` rule, for every ``num_ws >= 10`` (generators of 64² and up):
basic = 0–3, middle = 4–7, enhanced = 8..n-1. So n=10 (64²): 0–3/4–7/8–9; n=12 (128²):
0–3/4–7/8–11; n=14 (256², the default model): 0–3/4–7/8–13; n=18 (1024²): 0–3/4–7/8–17.
Smaller generators need an explicit split.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .errors import StylecodecError

__all__ = ["LayerSplit", "LayerSplitError", "LAYER_NAMES", "parse_layers"]

LAYER_NAMES: tuple[str, str, str] = ("basic", "middle", "enhanced")


def parse_layers(layers: str | int) -> int:
    """'basic'|'middle'|'enhanced' or 1..3 -> number of layers (a prefix of the stream)."""
    if isinstance(layers, str) and layers in LAYER_NAMES:
        return LAYER_NAMES.index(layers) + 1
    if isinstance(layers, int) and not isinstance(layers, bool) and 1 <= layers <= len(LAYER_NAMES):
        return layers
    raise StylecodecError(f"layers must be one of {LAYER_NAMES} or 1..{len(LAYER_NAMES)}, got {layers!r}")


class LayerSplitError(StylecodecError, ValueError):
    """A layer split is invalid (ranges do not partition 0..num_ws-1 in order) or misused."""


@dataclass(frozen=True)
class LayerSplit:
    """Contiguous, ordered, non-empty W+ index ranges for the three layers.

    ``basic``, ``middle`` and ``enhanced`` must be step-1 ranges that partition
    ``range(num_ws)`` in this order; anything else raises :class:`LayerSplitError`.
    """

    num_ws: int     # Number of W+ indices of the generator (2*log2(R) - 2).
    basic: range    # W+ indices of the basic layer (starts at 0).
    middle: range   # W+ indices of the middle layer (starts where basic stops).
    enhanced: range # W+ indices of the enhanced layer (stops at num_ws).

    names = LAYER_NAMES

    def __post_init__(self) -> None:
        if not isinstance(self.num_ws, int) or isinstance(self.num_ws, bool) or self.num_ws < 3:
            raise LayerSplitError(f"num_ws must be an int >= 3, got {self.num_ws!r}")
        expected_start = 0
        for name in LAYER_NAMES:
            r = getattr(self, name)
            if not isinstance(r, range):
                raise LayerSplitError(f"layer {name!r} must be a range, got {type(r).__name__}")
            if r.step != 1 or len(r) == 0:
                raise LayerSplitError(f"layer {name!r} must be a non-empty step-1 range, got {r}")
            if r.start != expected_start:
                raise LayerSplitError(f"layer {name!r} must start at W+ index {expected_start} "
                                      f"(layers are contiguous and ordered), got {r}")
            expected_start = r.stop
        if expected_start != self.num_ws:
            raise LayerSplitError(f"layers cover W+ indices 0..{expected_start - 1} but num_ws is "
                                  f"{self.num_ws}; the enhanced layer must stop at num_ws")

    @classmethod
    def default(cls, num_ws: int) -> "LayerSplit":
        """basic = 0–3, middle = 4–7, enhanced = 8..num_ws-1; needs num_ws >= 10 (64² and up)."""
        if not isinstance(num_ws, int) or num_ws < 10:
            raise LayerSplitError(f"LayerSplit.default needs num_ws >= 10 (a 64x64 or larger "
                                  f"generator), got {num_ws!r}; pass explicit ranges instead")
        return cls(num_ws, range(0, 4), range(4, 8), range(8, num_ws))

    def indices(self, name: str) -> range:
        """The W+ indices of layer ``name`` ('basic', 'middle' or 'enhanced')."""
        if name not in LAYER_NAMES:
            raise LayerSplitError(f"unknown layer {name!r}; expected one of {LAYER_NAMES}")
        return getattr(self, name)

    def slice(self, name: str) -> slice:
        """A slice for ``ws[:, split.slice(name)]`` (ws: [N, num_ws, w_dim])."""
        r = self.indices(name)
        return slice(r.start, r.stop)

    def size(self, name: str) -> int:
        """Number of W+ indices in layer ``name``."""
        return len(self.indices(name))

    def prefix(self, n_layers: int) -> list[str]:
        """Names of the first ``n_layers`` layers (1..3), e.g. prefix(2) == ['basic', 'middle']."""
        if not isinstance(n_layers, int) or not 1 <= n_layers <= len(LAYER_NAMES):
            raise LayerSplitError(f"n_layers must be 1..{len(LAYER_NAMES)}, got {n_layers!r}")
        return list(LAYER_NAMES[:n_layers])

    def layer_of(self, index: int) -> str:
        """Name of the layer holding W+ index ``index``."""
        for name in LAYER_NAMES:
            if index in getattr(self, name):
                return name
        raise LayerSplitError(f"W+ index {index!r} is outside 0..{self.num_ws - 1}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: {'num_ws': n, 'basic': [start, stop], ...} (stop exclusive)."""
        out: dict[str, Any] = {"num_ws": self.num_ws}
        for name in LAYER_NAMES:
            r = getattr(self, name)
            out[name] = [r.start, r.stop]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LayerSplit":
        """Inverse of :meth:`to_dict`; also accepts only {'num_ws': n} for the default split."""
        if not isinstance(d, Mapping) or "num_ws" not in d:
            raise LayerSplitError(f"a layer split config needs 'num_ws', got {d!r}")
        unknown = set(d) - {"num_ws", *LAYER_NAMES}
        if unknown:
            raise LayerSplitError(f"unknown layer split keys {sorted(unknown)}")
        present = [name for name in LAYER_NAMES if name in d]
        if not present:
            return cls.default(d["num_ws"])
        if len(present) != len(LAYER_NAMES):
            raise LayerSplitError(f"a layer split config needs all of {LAYER_NAMES} or none")
        ranges = {}
        for name in LAYER_NAMES:
            v = d[name]
            if isinstance(v, range):
                ranges[name] = v
            elif isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
                ranges[name] = range(v[0], v[1])
            else:
                raise LayerSplitError(f"layer {name!r} must be [start, stop], got {v!r}")
        return cls(d["num_ws"], **ranges)
