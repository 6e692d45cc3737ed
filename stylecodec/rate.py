"""Rate budgets: what "within 0.01 bpp" means, and which quality a request gets. The one place of
the rule that ``Codec.compress``, ``compress`` / ``compress-dir`` / ``verify-lfw`` and the
evaluation follow.

A budget is in bits per pixel of the coded R x R face with every byte of the stream counted:
``bpp`` limits the whole file, ``basic_bpp`` the basic layer extracted alone (what ``stylecodec
extract --layers basic`` writes); either may be None (no limit). A request (:func:`resolve`) is

- a fixed quality; or
- budgets given (strict): the highest quality within them; a face no quality fits is an error;
- nothing given: the model's own budget (config ``rate_budget``) the same way, but a face no
  quality fits gets the lowest quality, flagged, never an error; a model without a budget: the
  highest quality.

Needs no torch (it reads stream sizes only).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .bitstream import extract
from .errors import StylecodecError

__all__ = ["RateRequest", "resolve", "stream_sizes", "within_budget", "fits_budget", "fit_quality",
           "choose_quality", "budget_text"]


def stream_sizes(data: bytes) -> tuple[int, int]:
    """(bytes of the whole file, bytes of its basic layer extracted alone: what ``stylecodec
    extract --layers basic`` writes)."""
    return len(data), len(extract(data, 1))


def within_budget(file_bytes: int, basic_bytes: int, resolution: int, bpp: float | None,
                  basic_bpp: float | None = None) -> bool:
    """The whole file <= ``bpp`` and the basic layer alone <= ``basic_bpp`` (bits per pixel of the
    R x R face, every byte counted; None: no limit)."""
    pixels = resolution ** 2
    return ((bpp is None or 8 * file_bytes <= bpp * pixels)
            and (basic_bpp is None or 8 * basic_bytes <= basic_bpp * pixels))


def budget_text(bpp: float | None, basic_bpp: float | None = None) -> str:
    """'file <= 0.01 bpp, basic layer <= 0.003 bpp' (the limits that are set)."""
    return ", ".join(f"{what} <= {b:g} bpp" for what, b in (("file", bpp), ("basic layer", basic_bpp)) if b is not None)


def fits_budget(data: bytes, resolution: int, bpp: float | None, basic_bpp: float | None = None) -> bool:
    """Whether the stream ``data`` meets :func:`within_budget`."""
    return within_budget(*stream_sizes(data), resolution, bpp, basic_bpp)


def fit_quality(qualities: range, sizes: Callable[[int], tuple[int, int]], resolution: int, bpp: float | None,
                basic_bpp: float | None = None) -> int | None:
    """The highest quality q whose ``sizes(q)`` (whole file, basic layer alone: :func:`stream_sizes`
    of its stream) meet :func:`within_budget`, else None. Tries the qualities from the highest down
    and stops at the first that fits."""
    return next((q for q in reversed(qualities) if within_budget(*sizes(q), resolution, bpp, basic_bpp)), None)


def choose_quality(qualities: range, sizes: Callable[[int], tuple[int, int]], resolution: int, bpp: float | None,
                   basic_bpp: float | None = None) -> tuple[int, bool]:
    """(:func:`fit_quality`, True), or (the lowest quality, False) when none fits: the rule of a
    budget that must give a stream (the model's own budget, the evaluation's rate targets)."""
    q = fit_quality(qualities, sizes, resolution, bpp, basic_bpp)
    return (qualities[0], False) if q is None else (q, True)


@dataclass(frozen=True)
class RateRequest:
    """What one face is coded at; made by :func:`resolve`."""

    quality: int | None         # a fixed quality index; None: the highest quality within the budgets
    bpp: float | None           # whole file <= bpp (bits per pixel of the R x R face); None: no limit
    basic_bpp: float | None     # basic layer extracted alone <= basic_bpp; None: no limit
    strict: bool = False        # budgets given explicitly: a face no quality fits is an error

    @property
    def by_model_budget(self) -> bool:
        """The model's own budget serves the request (nothing was given): a face no quality fits
        gets the lowest quality, flagged."""
        return self.quality is None and not self.strict

    def within(self, data: bytes, resolution: int) -> bool | None:
        """Whether the stream meets the budgets; None at a fixed quality (no budget)."""
        return None if self.quality is not None else fits_budget(data, resolution, self.bpp, self.basic_bpp)

    def served_by(self, data: bytes, quality: int, resolution: int, lowest: int) -> bool:
        """Whether an existing stream (its header's ``quality``) is what this request gives: the
        same fixed quality; or within the budgets; or, under the model's budget, the lowest quality
        (what a face no quality fits gets)."""
        if self.quality is not None:
            return quality == self.quality
        return fits_budget(data, resolution, self.bpp, self.basic_bpp) or (self.by_model_budget and quality == lowest)


def resolve(quality: int | None, bpp: float | None, basic_bpp: float | None,
            model_budget: tuple[float | None, float | None], qualities: range) -> RateRequest:
    """The request for what is given (see the module docstring). Raises StylecodecError for a
    quality together with a budget or a budget <= 0."""
    if quality is not None and (bpp is not None or basic_bpp is not None):
        raise StylecodecError("give a quality or rate budgets (bpp, basic_bpp), not both")
    for name, b in (("bpp", bpp), ("basic_bpp", basic_bpp)):
        if b is not None and not b > 0:
            raise StylecodecError(f"{name} must be > 0, got {b!r}")
    if quality is not None:
        return RateRequest(quality, None, None)
    if bpp is not None or basic_bpp is not None:
        return RateRequest(None, bpp, basic_bpp, strict=True)
    bpp, basic_bpp = model_budget
    if bpp is None and basic_bpp is None:
        return RateRequest(qualities[-1], None, None)
    return RateRequest(None, bpp, basic_bpp)

