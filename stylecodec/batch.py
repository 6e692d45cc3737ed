"""``stylecodec compress-dir``: compress a folder of faces, sharded, resumable, one manifest; and the
folder listing and ``--shard k/N`` rule that ``stylecodec eval`` shares.

Each ``IN_DIR/<path>`` becomes ``OUT_DIR/<path>.sfc`` (the full name is kept, so a.jpg and a.png
do not collide), written atomically (tmp + rename: an interrupt leaves no partial file). A file
whose stream exists and has a valid header of this model (and the requested quality, or a
rate within the budgets) is skipped. Without a rate option each face is coded as
``Codec.compress`` codes it: within the model's default budget, or at the lowest quality when no
quality fits (``within_budget`` false). The manifest ``OUT_DIR/manifest[.shard-k-of-N].jsonl``
gets one JSON line per file: status ``ok`` / ``skipped`` / ``error``, bytes and bpp of the whole
file, bytes per layer, quality, ``within_budget`` (null at a fixed quality), seconds, or the
error. A file that cannot be compressed (unreadable, not a face for the aligner, no quality
fits an explicit ``--bpp``/``--basic-bpp``) is logged and the run goes on.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from .bitstream import BitstreamError, describe, unpack
from .errors import StylecodecError
from .files import write_bytes
from .rate import RateRequest

__all__ = ["compress_dir", "read_manifest", "stream_path", "find_images", "parse_shard", "select_shard", "shard_tag",
           "IMAGE_EXTS"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


def find_images(folder: str | os.PathLike, val_count: int | None = None, limit: int | None = None) -> list[str]:
    """Image paths under ``folder`` (recursive), relative, '/'-separated, sorted by name.
    ``val_count``: keep only the last N (the project's held-out split); ``limit``: then the first N."""
    root = Path(folder)
    if not root.is_dir():
        raise StylecodecError(f"image folder {root} does not exist")
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.suffix.lower() in IMAGE_EXTS and p.is_file() and not p.name.startswith("."))
    if val_count is not None:
        names = names[-val_count:] if val_count > 0 else []
    if limit is not None:
        names = names[:limit]
    if not names:
        raise StylecodecError(f"no images ({', '.join(IMAGE_EXTS)}) in {root}")
    return names


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'k/N' (0 <= k < N) -> (k, N); None stays None."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise StylecodecError(f"--shard must be k/N with 0 <= k < N (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def select_shard(items: Sequence, shard: tuple[int, int] | None) -> list[tuple[int, object]]:
    """(global index, item) of shard k/N: the items whose sorted index i has i % N == k."""
    if shard is None:
        return list(enumerate(items))
    k, n = shard
    return [(i, it) for i, it in enumerate(items) if i % n == k]


def shard_tag(shard: tuple[int, int] | None) -> str:
    """'' or '.shard-k-of-N' (inserted into per-shard file names)."""
    return "" if shard is None else f".shard-{shard[0]}-of-{shard[1]}"


def stream_path(out_dir: str | os.PathLike, name: str) -> Path:
    return Path(out_dir) / f"{name}.sfc"


def read_manifest(out_dir: str | os.PathLike) -> dict[str, dict]:
    """image -> its latest manifest entry, over all manifest*.jsonl (a torn last line is ignored)."""
    out: dict[str, dict] = {}
    for path in sorted(Path(out_dir).glob("manifest*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                out[e["image"]] = e
    return out


def _entry(name: str, stream: Path, data: bytes, status: str, seconds: float, within: bool | None) -> dict:
    d = describe(data)
    return {"image": name, "stream": str(stream), "status": status, "bytes": len(data), "bpp": d["bpp"],
            "resolution": d["resolution"], "quality": d["quality"], "within_budget": within,
            "layer_bytes": [l["total_bytes"] for l in d["layers"]],
            "layer_payload_bytes": [l["payload_bytes"] for l in d["layers"]], "seconds": round(seconds, 4)}


def _done(path: Path, codec, request: RateRequest) -> bytes | None:
    """The existing stream if it is valid for this model and what ``request`` gives, else None."""
    try:
        data = path.read_bytes()
        header, _ = unpack(data, codec.key)
    except (OSError, BitstreamError):
        return None
    return data if request.served_by(data, header.quality, codec.resolution, codec.quality_range[0]) else None


def compress_dir(codec, in_dir, out_dir, quality: int | None = None, bpp: float | None = None,
                 shard: tuple[int, int] | None = None, limit: int | None = None, progress: bool = True,
                 basic_bpp: float | None = None) -> dict:
    """Compress the (shard of the) images of ``in_dir`` at ``quality`` or within the rate budgets
    (``bpp`` whole file, ``basic_bpp`` basic layer alone; see ``Codec.compress``); returns counts
    {"ok", "skipped", "error", "over_budget", "manifest"} (over_budget: streams written or kept
    above the default budget, at the lowest quality)."""
    names = find_images(in_dir, limit=limit)
    given = {"quality": quality, "bpp": bpp, "basic_bpp": basic_bpp}   # as given: Codec.compress applies the rule
    request = codec.resolve_rate(**given)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / f"manifest{shard_tag(shard)}.jsonl"
    counts = {"ok": 0, "skipped": 0, "error": 0, "over_budget": 0, "manifest": manifest}
    with open(manifest, "a", encoding="utf-8") as log:
        bar = tqdm(select_shard(names, shard), desc="compress", unit="img", disable=not progress)
        for _, name in bar:
            dst = stream_path(out_dir, name)
            t0 = time.perf_counter()
            data = _done(dst, codec, request)
            if data is not None:
                entry = _entry(name, dst, data, "skipped", 0.0, request.within(data, codec.resolution))
            else:
                try:
                    data = codec.compress(Path(in_dir) / name, **given)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    write_bytes(os.fspath(dst), data)
                    entry = _entry(name, dst, data, "ok", time.perf_counter() - t0,
                                   request.within(data, codec.resolution))
                except Exception as e:  # noqa: BLE001  one bad file must not stop a dataset run
                    entry = {"image": name, "stream": None, "status": "error",
                             "error": f"{type(e).__name__}: {e}".replace("\n", " ")[:500]}
            counts[entry["status"]] += 1
            counts["over_budget"] += entry.get("within_budget") is False
            log.write(json.dumps(entry) + "\n")
            log.flush()
            bar.set_postfix(ok=counts["ok"], skipped=counts["skipped"], errors=counts["error"])
    return counts
