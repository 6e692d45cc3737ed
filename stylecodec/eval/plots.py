"""Rate-distortion plots (matplotlib, PNG): bpp (log) vs each metric, one line per codec curve,
the VVC floor (QP 63) as a dashed vertical line, the headline points as stars."""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..files import write_atomic
from .tables import DISPLAY, LABELS, METRICS, curves

__all__ = ["rd_plots", "PLOT_METRICS"]

PLOT_METRICS = [m for m, _, _ in METRICS]
_VVC_COLOURS = {"vvc": "tab:red", "vvc_down2": "indianred", "vvc_down4": "lightcoral"}


def _save(fig, path: Path) -> None:
    write_atomic(os.fspath(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))


def _axes(title: str, ylabel: str, floor: float | None):
    import matplotlib.pyplot as plt     # after rd_plots chose the backend

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (whole file)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if floor is not None:
        ax.axvline(floor, color="k", ls="--", lw=1, label=f"VVC floor (QP 63) {floor:.4f} bpp")
    return fig, ax


def rd_plots(table: list[dict], head: list[dict], out_dir: str | os.PathLike, lfw: dict | None = None) -> list[Path]:
    """Write ``rd_<metric>.png`` for every metric with data (and ``rd_verification.png``); return the paths."""
    import matplotlib       # here: choosing the Agg backend is a process-wide side effect, made only to write plots
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    cs = curves(table)
    floor = next((e["bpp"] for e in table if e["codec"] == "vvc" and e["setting"] == "qp63" and e["n"]), None)
    paths = []
    for m in PLOT_METRICS:
        if not any(math.isfinite(e[m]) for pts in cs.values() for e in pts):
            continue
        fig, ax = _axes(f"{LABELS[m]} vs rate", LABELS[m], floor)
        for codec, pts in cs.items():
            pts = [e for e in pts if math.isfinite(e[m])]
            if not pts:
                continue
            style = dict(lw=2.2, marker="o") if codec.startswith("stylecodec") else dict(lw=1, marker=".")
            if codec.startswith("vvc"):
                style["color"] = _VVC_COLOURS.get(codec, "lightcoral")
            line, = ax.plot([e["bpp"] for e in pts], [e[m] for e in pts], label=DISPLAY.get(codec, codec), **style)
            if codec == "vvc":
                ax.plot([e["bpp_payload"] for e in pts], [e[m] for e in pts], ls=":", marker=".", lw=1,
                        color=line.get_color(), label="vvc (slice data only)")
        for e in head:
            if e["family"] == "stylecodec" and math.isfinite(e[m]):
                ax.plot([e["bpp"]], [e[m]], "k*", ms=11)
        ax.legend(fontsize=7, loc="best")
        paths.append(out_dir / f"rd_{m}.png")
        _save(fig, paths[-1])
        plt.close(fig)
    entries = [e for e in (lfw or {}).get("entries", []) if e.get("bpp") is not None]
    if entries:
        fig, ax = _axes(f"LFW verification ({lfw.get('n_pairs')} pairs, SFace judge)", "accuracy", floor)
        for e in entries:
            ax.plot([e["bpp"]], [e["accuracy"]], "o", label=f"{e['codec']} {e['setting']}")
        orig = next((e for e in lfw["entries"] if e["codec"] == "original"), None)
        if orig:
            ax.axhline(orig["accuracy"], color="g", ls=":", label="original images")
        ax.legend(fontsize=7, loc="best")
        paths.append(out_dir / "rd_verification.png")
        _save(fig, paths[-1])
        plt.close(fig)
    return paths
