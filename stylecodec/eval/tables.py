"""Numbers of a report: means per codec x setting, RD curves, BD vs VVC, the headline rows."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from ..metrics.bd import bd_metric, bd_rate
from .coding import STYLE_CODECS, parse_target, target_setting
from .common import largest_within
from .settings import VVC_FLOOR_QP

__all__ = ["METRICS", "LABELS", "common_rows", "mean_table", "curves", "pareto", "bd_table", "headline_quality", "headline",
           "fmt", "DISPLAY"]

# column, label, higher is better
METRICS = [("psnr", "PSNR dB", True), ("ms_ssim", "MS-SSIM", True), ("lpips_alex", "LPIPS-Alex", False),
           ("lpips_vgg", "LPIPS-VGG", False), ("id_facenet", "ID facenet", True), ("id_sface", "ID SFace", True),
           ("dist_dlib", "dist dlib", False), ("nme_dlib", "NME dlib", False), ("nme_head", "NME head", False)]
LABELS = {m: label for m, label, _ in METRICS}
DISPLAY = {"stylecodec-basic": "stylecodec basic", "stylecodec-middle": "stylecodec +middle",
           "stylecodec-all": "stylecodec all"}
_MEANS = ["bytes", "bpp", "payload_bytes", "bpp_payload", "q", "encode_s", "decode_s"] + [m for m, _, _ in METRICS]


def fmt(v, digits: int = 4) -> str:
    """Significant-digit formatting; '–' for missing values."""
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"


def _order(e: dict) -> tuple:
    fam = e["family"]
    rank = 0 if fam == "stylecodec" else (1 if fam == "vvc" else 2)
    return rank, fam, e["codec"], e["point"] != "sweep", e["bpp"] if math.isfinite(e["bpp"]) else 0.0


def common_rows(rows: list[dict]) -> tuple[list[dict], int]:
    """The rows of the images that every codec family in ``rows`` has coded (so means and BD
    numbers compare the same faces), and how many images were left out."""
    families: dict[str, set] = defaultdict(set)
    for r in rows:
        families[r["family"]].add(r["image"])
    images = set.intersection(*families.values()) if families else set()
    left_out = len(set.union(*families.values())) - len(images) if families else 0
    return [r for r in rows if r["image"] in images], left_out


def mean_table(rows: list[dict]) -> list[dict]:
    """One entry per (codec, setting): n (rows measured), errors, means of every numeric column,
    and for rate targets ``met`` (fraction of images whose stream fits: the basic-layer budget for
    the basic row when the target has one, else the whole-file budget)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["codec"], r["setting"])].append(r)
    out = []
    for (codec, setting), rs in groups.items():
        ok = [r for r in rs if not r["error"]]
        e = {"codec": codec, "setting": setting, "family": rs[0]["family"], "point": rs[0]["point"] or "sweep",
             "n": len(ok), "errors": len(rs) - len(ok), "first_error": next((r["error"] for r in rs if r["error"]), "")}
        for c in _MEANS:
            vals = np.array([r[c] for r in ok], np.float64)
            vals = vals[np.isfinite(vals)]
            e[c] = float(vals.mean()) if vals.size else math.nan
        budgets = parse_target(setting)
        if budgets is not None:
            target = budgets[1] if codec == STYLE_CODECS[0] and budgets[1] is not None else budgets[0]
            target = math.inf if target is None else target
            e["met"] = float(np.mean([r["bpp"] <= target + 1e-12 for r in ok])) if ok else math.nan
        out.append(e)
    return sorted(out, key=_order)


def curves(table: list[dict]) -> dict[str, list[dict]]:
    """codec -> its sweep entries sorted by bpp (stylecodec basic, +middle, all first)."""
    out: dict[str, list[dict]] = defaultdict(list)
    for e in table:
        if e["point"] == "sweep" and e["n"] and math.isfinite(e["bpp"]):
            out[e["codec"]].append(e)
    rank = {c: i for i, c in enumerate(STYLE_CODECS)}
    return {k: sorted(out[k], key=lambda e: e["bpp"]) for k in sorted(out, key=lambda k: (rank.get(k, 9), k))}


def pareto(points: list[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """The points (rate, metric) that no cheaper point beats, sorted by rate (BD needs monotonic curves)."""
    pts = sorted((r, m) for r, m in points if math.isfinite(r) and math.isfinite(m) and r > 0)
    out: list[tuple[float, float]] = []
    for r, m in pts:
        q = m if higher_is_better else -m
        if out and r == out[-1][0]:
            if q > (out[-1][1] if higher_is_better else -out[-1][1]):
                out[-1] = (r, m)
            continue
        if not out or q > (out[-1][1] if higher_is_better else -out[-1][1]):
            out.append((r, m))
    return out


def _bd(fn, a, t, lower) -> float | str:
    try:
        return fn([r for r, _ in a], [m for _, m in a], [r for r, _ in t], [m for _, m in t], lower_is_better=lower)
    except ValueError as e:
        return "no overlap" if "overlap" in str(e) else f"n/a ({e})"


def bd_table(table: list[dict], anchor: str = "vvc") -> list[dict]:
    """BD-rate (%) and BD-metric of every other curve vs ``anchor`` for each metric, on whole-file
    rates, plus BD-rate against the anchor's slice-only (payload) rates."""
    cs = curves(table)
    if anchor not in cs:
        return []
    out = []
    for codec, pts in cs.items():
        if codec == anchor:
            continue
        for m, label, hib in METRICS:
            if m == "nme_head":
                continue
            t = pareto([(e["bpp"], e[m]) for e in pts], hib)
            a = pareto([(e["bpp"], e[m]) for e in cs[anchor]], hib)
            ap = pareto([(e["bpp_payload"], e[m]) for e in cs[anchor]], hib)
            row = {"codec": codec, "metric": m, "label": label}
            if len(t) < 2 or len(a) < 2:
                row.update(bd_rate="n/a (fewer than 2 points)", bd_metric="n/a (fewer than 2 points)",
                           bd_rate_payload="n/a (fewer than 2 points)")
            else:
                row.update(bd_rate=_bd(bd_rate, a, t, not hib), bd_metric=_bd(bd_metric, a, t, not hib),
                           bd_rate_payload=_bd(bd_rate, ap, t, not hib) if len(ap) >= 2 else "n/a")
            out.append(row)
    return out


def headline_quality(table: list[dict], info: dict, target: float = 0.01, override: int | None = None) -> int | None:
    """The stylecodec quality of the headline: ``override``, the model's ``default_quality``, the
    highest quality whose mean whole-file bpp (all layers) is <= ``target``, else the lowest."""
    qs = sorted(int(e["setting"][1:]) for e in table if e["codec"] == "stylecodec-all" and e["point"] == "sweep"
                and e["n"])
    if override is not None:
        return override
    if info.get("default_quality") is not None and int(info["default_quality"]) in qs:
        return int(info["default_quality"])
    if not qs:
        return None
    bpp = {int(e["setting"][1:]): e["bpp"] for e in table if e["codec"] == "stylecodec-all" and e["point"] == "sweep"}
    fit = [q for q in qs if bpp[q] <= target]
    return max(fit) if fit else min(qs)


def _closest(entries: list[dict], key: str, value: float) -> dict | None:
    ok = [e for e in entries if math.isfinite(e.get(key, math.nan))]
    return min(ok, key=lambda e: abs(e[key] - value)) if ok and math.isfinite(value) else None


def headline(table: list[dict], info: dict, target: float | None = None, override: int | None = None) -> list[dict]:
    """Rows (entry + "label") of the headline table: stylecodec basic / +middle / all at the rate
    target (per image, when the run has one) and/or at the headline quality (always when no
    target, else only when given by ``override`` or the model's ``default_quality``); the linear
    prior at its largest rate point whose mean bytes do not exceed stylecodec all's; VVC at its
    floor (QP 63), at its lowest rate (downscaled), and at the VVC setting whose LPIPS-Alex /
    identity cosine is closest to stylecodec all's."""
    by = {(e["codec"], e["setting"]): e for e in table}
    targets = info.get("bpp_targets") or []
    target = target if target is not None else (targets[0] if targets else 0.01)
    settings, budget = [], target_setting(target, info.get("basic_bpp"))
    if (STYLE_CODECS[2], budget) in by:
        settings.append(budget)
    if not settings or override is not None or info.get("default_quality") is not None:
        q = headline_quality(table, info, target, override)
        if q is not None:
            settings.append(f"q{q}")
    out, whole = [], None
    for setting in settings:
        w = by.get((STYLE_CODECS[2], setting))
        whole = whole or w
        for c in STYLE_CODECS:
            e = by.get((c, setting))
            if e:
                how = (f"<= {target:g} bpp per image, met by {(w or e).get('met', 0):.0%} of files"
                       if setting.startswith("bpp") else f"quality {setting[1:]}")
                b = by.get((STYLE_CODECS[0], setting))
                if setting.startswith("bpp") and info.get("basic_bpp") is not None and b:
                    how += f"; basic layer <= {info['basic_bpp']:g} bpp, met by {b.get('met', 0):.0%}"
                out.append({**e, "label": f"{DISPLAY[c]} ({how})"})
    linear = [e for e in table if e["family"] == "linear" and e["point"] == "sweep" and e["n"]
              and math.isfinite(e["bytes"])]
    if whole and linear and math.isfinite(whole["bytes"]):
        e, fit = largest_within(linear, whole["bytes"], lambda e: e["bytes"])
        how = "at most the same bytes" if fit else "its fewest bytes, more than stylecodec's"
        out.append({**e, "label": f"Linear prior (eigenfaces), {how} ({e['setting']})"})
    vvc = [e for e in table if e["family"] == "vvc" and e["point"] == "sweep" and e["n"]]
    floor = by.get(("vvc", f"qp{VVC_FLOOR_QP}"))
    if floor:
        out.append({**floor, "label": f"VVC floor (QP {VVC_FLOOR_QP})"})
    lowest = min(vvc, key=lambda e: e["bpp"], default=None)
    if lowest and lowest is not floor:
        out.append({**lowest, "label": f"VVC lowest rate ({lowest['codec']}, {lowest['setting']})"})
    if whole:
        id_key = "id_sface" if math.isfinite(whole["id_sface"]) else "id_facenet"
        for key, what in (("lpips_alex", "LPIPS-Alex"), (id_key, f"identity ({LABELS[id_key]})")):
            m = _closest(vvc, key, whole[key])
            if m:
                out.append({**m, "label": f"VVC matched {what} ({m['codec']}, {m['setting']})"})
    return out
