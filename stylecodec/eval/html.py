"""``index.html``: the headline table, the RD plots and, per image, decoded faces side by side at
matched rates (stylecodec's three layer prefixes, VVC at its floor and at the nearest rate, each
other anchor at its nearest rate). Only thumbnails that exist are referenced."""
from __future__ import annotations

import html
import html.parser
import math
import os
from pathlib import Path

from .common import write_text
from .harness import thumb_path
from .tables import DISPLAY, fmt

__all__ = ["write_index", "grid_cells", "check_index"]

_CSS = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}figure{display:inline-block;margin:4px;"
        "text-align:center;font-size:11px;vertical-align:top;width:140px}img.rd{width:480px;margin:4px}")


class _Checker(html.parser.HTMLParser):
    """Tag balance (void elements excepted) and the local files that img/a elements reference."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.refs.append(a.get("src") or "")
            if not a.get("alt"):
                self.problems.append(f"line {self.getpos()[0]}: <img> without alt text")
        elif tag == "a" and a.get("href"):
            self.refs.append(a["href"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"line {self.getpos()[0]}: </{tag}> closes <{self.stack[-1] if self.stack else ''}>")
        else:
            self.stack.pop()


def check_index(path: str | os.PathLike) -> tuple[list[str], int]:
    """Check a written ``index.html`` without rendering it: balanced tags, a doctype, alt text on
    every image, and every local file it references (images, links) present. Returns (problems,
    number of local references checked)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(text)
    checker.close()
    problems = list(checker.problems)
    if not text.lstrip().lower().startswith("<!doctype html>"):
        problems.append("no <!DOCTYPE html>")
    problems += [f"<{t}> never closed" for t in checker.stack]
    local = [r for r in checker.refs if r and "://" not in r and not r.startswith(("#", "mailto:"))]
    problems += [f"missing file {r}" for r in local if not (path.parent / r).is_file()]
    problems += ["an element references an empty path" for r in checker.refs if not r]
    return problems, len(local)


def grid_cells(rows: list[dict], image: str, head: list[dict]) -> list[tuple[dict | None, str]]:
    """(row or None for the original, caption) of one image's grid, in display order."""
    mine = [r for r in rows if r["image"] == image and not r["error"]]
    settings: dict[str, str] = {}
    for e in head:
        if e["family"] == "stylecodec":
            settings.setdefault(e["codec"], e["setting"])
    cells: list[tuple[dict | None, str]] = [(None, "original")]
    ref_bpp = math.nan
    for codec, setting in settings.items():
        r = next((r for r in mine if r["codec"] == codec and r["setting"] == setting), None)
        if r:
            cells.append((r, DISPLAY.get(codec, codec)))
            ref_bpp = r["bpp"]
    floor = next((r for r in mine if r["codec"] == "vvc" and r["setting"] == "qp63"), None)
    if floor:
        cells.append((floor, "VVC floor"))
    families = sorted({r["family"] for r in mine if r["family"] != "stylecodec"}, key=lambda f: (f != "vvc", f))
    for fam in families:
        cand = [r for r in mine if r["family"] == fam and r["point"] == "sweep" and r is not floor]
        if not cand:
            continue
        if math.isfinite(ref_bpp):
            best = min(cand, key=lambda r: abs(math.log(r["bpp"] / ref_bpp)))
            cells.append((best, f"{fam} nearest rate"))
        else:
            cells.append((min(cand, key=lambda r: r["bpp"]), f"{fam} lowest rate"))
    return cells


def _table(head: list[dict], cols: list[tuple[str, str]]) -> str:
    th = "".join(f"<th>{html.escape(c)}</th>" for _, c in [("label", "codec"), *cols])
    body = []
    for e in head:
        tds = "".join(f"<td>{html.escape(fmt(e.get(k)))}</td>" for k, _ in cols)
        body.append(f"<tr><td style='text-align:left'>{html.escape(e['label'])}</td>{tds}</tr>")
    return f"<table><tr>{th}</tr>{''.join(body)}</table>"


def write_index(run_dir: str | os.PathLike, rows: list[dict], head: list[dict], cols: list[tuple[str, str]],
                plots: list[Path], title: str) -> Path:
    """Write ``run_dir/index.html``; returns its path."""
    run_dir = Path(run_dir)
    parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             "<p>Details: <a href='summary.md'>summary.md</a>, raw rows: results*.csv.</p>",
             "<h2>Headline</h2>", _table(head, cols), "<h2>Rate–distortion</h2><div>"]
    for p in plots:
        rel = p.relative_to(run_dir).as_posix()
        parts.append(f"<img class='rd' src='{html.escape(rel)}' alt='{html.escape(p.stem)}'>")
    parts.append("</div>")
    if (run_dir / "face_grid.png").is_file():                 # stylecodec demo: layer prefixes, linear prior, VVC
        parts.append("<h2>Face grid</h2><p>Basic, +middle, all layers; the linear prior at no more bytes; VVC at its "
                     "floor and at the identity of the all-layer face (summary.md has the numbers).</p>"
                     "<img src='face_grid.png' alt='face grid'>")
    parts.append("<h2>Decoded faces at matched rates</h2>")
    images = sorted({r["image"] for r in rows if thumb_path(run_dir, r["image"]).is_file()})
    if not images:
        parts.append("<p>No thumbnails in this run (eval --thumbs 0).</p>")
    for image in images:
        figs = []
        for row, caption in grid_cells(rows, image, head):
            path = thumb_path(run_dir, image) if row is None else thumb_path(run_dir, image, row["codec"], row["setting"])
            if not path.is_file():
                continue
            detail = "" if row is None else (f"<br>{html.escape(row['setting'])}, {int(row['bytes'])} B, "
                                             f"{row['bpp']:.4f} bpp<br>LPIPS {fmt(row['lpips_alex'], 3)}, "
                                             f"ID {fmt(row['id_sface'], 3)}")
            rel = path.relative_to(run_dir).as_posix()
            figs.append(f"<figure><img src='{html.escape(rel)}' alt='{html.escape(caption)}' width='128'>"
                        f"<figcaption>{html.escape(caption)}{detail}</figcaption></figure>")
        parts.append(f"<h3>{html.escape(image)}</h3><div>{''.join(figs)}</div>")
    parts.append("</body></html>\n")
    path = run_dir / "index.html"
    write_text(path, "\n".join(parts))
    return path
