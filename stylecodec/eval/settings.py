"""What a run codes: the anchors' sweeps (``--anchors``, ``--qps``, ``--downscale``) and the
stylecodec qualities (``--qualities``) and rate targets (``--bpp-targets``).

Default sweeps aim at the lowest rates, a few points each (CPU time grows with every point):
VVC QP 37..61 step 4 plus its floor 63; VVC after downscaling (x2, x4): QP 45..63 step 6;
HEVC QP 37..51; AV1 CRF 40..63; JPEG XL distance 3..15; JPEG quality 30..1; the linear prior
(eigenfaces) at all its rate points (about 20..120 bytes).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..anchors import ANCHORS, EXTERNAL_ANCHORS, downscaled, get_anchor
from ..anchors.linear import DEFAULT_POINTS as _LINEAR_POINTS
from ..errors import StylecodecError

__all__ = ["DEFAULT_SWEEPS", "DOWNSCALE_SWEEP", "AnchorSpec", "anchor_specs", "parse_qps", "parse_qualities",
           "parse_floats", "setting_name", "VVC_FLOOR_QP"]

VVC_FLOOR_QP = 63
DEFAULT_SWEEPS: dict[str, tuple[float, ...]] = {
    "vvc": (37, 41, 45, 49, 53, 57, 61, 63),
    "hevc": (37, 41, 45, 49, 51),
    "av1": (40, 48, 56, 63),
    "jxl": (3.0, 6.0, 10.0, 15.0),
    "jpeg": (30, 15, 5, 1),
    "linear": tuple(range(len(_LINEAR_POINTS) - 1, -1, -1)),
}
DOWNSCALE_SWEEP: tuple[float, ...] = (45, 51, 57, 63)


@dataclass(frozen=True)
class AnchorSpec:
    """One anchor curve: registry ``name``, optional downscale ``factor``, the quality values."""

    name: str
    factor: float | None
    qs: tuple[float, ...]

    @property
    def codec(self) -> str:
        return self.name if self.factor is None else f"{self.name}_down{self.factor:g}"

    def build(self, **kwargs):
        a = get_anchor(self.name, **kwargs)
        return a if self.factor is None else downscaled(a, self.factor)


def setting_name(quality_name: str, q: float) -> str:
    return f"{quality_name}{q:g}"


def parse_floats(text: str | None, what: str) -> list[float]:
    """'1,2.5,3' or 'a:b:s' (inclusive range) pieces, comma-separated; '' / 'none' -> []."""
    if text is None or str(text).strip().lower() in ("", "none"):
        return []
    out: list[float] = []
    for piece in str(text).split(","):
        piece = piece.strip()
        try:
            if ":" in piece:
                a, b, s = (float(x) for x in piece.split(":"))
                if s <= 0:
                    raise ValueError
                n = int((b - a) / s + 1e-9)
                out += [a + i * s for i in range(n + 1)] + ([b] if a + n * s != b else [])
            else:
                out.append(float(piece))
        except ValueError:
            raise StylecodecError(f"{what}: cannot read {piece!r} (numbers, comma-separated, or a:b:step)") from None
    return out


def parse_qps(specs: list[str] | None) -> dict[str, list[float]]:
    """``--qps`` values: 'NAME=LIST' (NAME an anchor or e.g. vvc_down2), ';'-separated or repeated;
    a bare LIST applies to vvc. An entry for vvc also sets its downscaled variants unless they
    have their own."""
    out: dict[str, list[float]] = {}
    for spec in specs or []:
        for part in filter(None, (p.strip() for p in spec.split(";"))):
            name, _, values = part.rpartition("=") if "=" in part else ("vvc", "", part)
            if not re.fullmatch(r"[a-z0-9]+(_down[0-9.]+)?", name.strip()):
                raise StylecodecError(f"--qps: bad anchor name {name!r} in {part!r}")
            out[name.strip()] = parse_floats(values, f"--qps {name}")
    return out


def anchor_specs(names: list[str], qps: dict[str, list[float]], downscale: list[float]) -> list[AnchorSpec]:
    """The anchor curves of a run; downscale variants are made for VVC only (below its floor)."""
    specs = []
    for name in names:
        if name not in ANCHORS and name not in EXTERNAL_ANCHORS:
            raise StylecodecError(f"unknown anchor {name!r}; known: {', '.join([*ANCHORS, *EXTERNAL_ANCHORS])}")
        default = DEFAULT_SWEEPS.get(name) or DEFAULT_SWEEPS["vvc" if name in EXTERNAL_ANCHORS else name]
        qs = qps.get(name, list(default))
        a = get_anchor(name)
        for q in qs:
            a.check_q(q)
        specs.append(AnchorSpec(name, None, tuple(qs)))
        if name == "vvc":
            for f in downscale:
                key = f"vvc_down{f:g}"
                specs.append(AnchorSpec(name, f, tuple(qps.get(key, qps.get("vvc", list(DOWNSCALE_SWEEP))))))
    unused = set(qps) - {s.codec for s in specs} - set(names)
    if unused:
        raise StylecodecError(f"--qps names anchors that are not run: {', '.join(sorted(unused))}")
    return specs


def parse_qualities(text: str | None, available: range) -> list[int]:
    """'all' (default) or a comma list of quality indices of the model."""
    if text is None or str(text).strip().lower() == "all":
        return list(available)
    qs = [int(q) for q in parse_floats(text, "--qualities")]
    bad = [q for q in qs if q not in available]
    if bad:
        raise StylecodecError(f"--qualities {bad} not in the model's 0..{available.stop - 1}")
    return sorted(set(qs))
