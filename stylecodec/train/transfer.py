"""Split a checkpoint into small shards and join them back (moving runs to and from a remote GPU).

A lent GPU machine returns at most 8 files of 16 MiB per call; a training checkpoint is larger.

    python -m stylecodec.train.transfer split RUN/ckpt-000100.pt OUT_DIR [--max-mib 15] [--drop optim] [--half]
    python -m stylecodec.train.transfer join OUT_DIR RUN/ckpt-000100.pt

``split`` writes ``manifest.pt`` (the checkpoint with every tensor replaced by its index, plus
shard sha256s) and ``shard-NNN.pt`` files of at most ``--max-mib``; ``--drop`` removes top-level
entries (e.g. optimiser state, to be rebuilt on resume) and ``--half`` stores float32 tensors as
float16 (restored to float32 by ``join``: a rounding of every weight, ~3 decimal digits).
``join`` checks every shard's sha256 and writes the checkpoint atomically.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

from ..assets.fetch import sha256_file
from ..errors import StylecodecError
from ..files import atomic_torch_save

__all__ = ["split_checkpoint", "join_checkpoint"]


def _strip(obj: Any, tensors: list[torch.Tensor]) -> Any:
    """The structure of ``obj`` with each tensor replaced by {'__tensor__': index into tensors}."""
    if isinstance(obj, torch.Tensor):
        tensors.append(obj)
        return {"__tensor__": len(tensors) - 1}
    if isinstance(obj, dict):
        return {k: _strip(v, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_strip(v, tensors) for v in obj)
    return obj


def _fill(obj: Any, tensors: dict[int, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and set(obj) == {"__tensor__"}:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict):
        return {k: _fill(v, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_fill(v, tensors) for v in obj)
    return obj


def split_checkpoint(src: str | os.PathLike, out_dir: str | os.PathLike, max_mib: float = 15,
                     drop: tuple[str, ...] = (), half: bool = False) -> list[Path]:
    """Write ``out_dir``/manifest.pt + shard-NNN.pt (each <= max_mib); returns the files written."""
    ck = torch.load(src, map_location="cpu", weights_only=True)
    for key in drop:
        if key not in ck:
            raise StylecodecError(f"--drop {key}: no such entry (entries: {', '.join(map(str, ck))})")
        del ck[key]
    tensors: list[torch.Tensor] = []
    skeleton = _strip(ck, tensors)
    halved = [i for i, t in enumerate(tensors) if half and t.dtype == torch.float32]
    limit = int(max_mib * 2**20) - 4096                       # room for the zip container
    shards: list[dict[int, torch.Tensor]] = [{}]
    size = 0
    for i, t in enumerate(tensors):
        t = t.half() if i in halved else t
        n = t.numel() * t.element_size()
        if n > limit:
            raise StylecodecError(f"tensor {i} {tuple(t.shape)} alone is {n / 2**20:.1f} MiB > --max-mib")
        if size + n > limit and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][i] = t.contiguous().clone()
        size += n
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k, shard in enumerate(shards):
        files.append(out / f"shard-{k:03d}.pt")
        torch.save(shard, files[-1])
    manifest = {"skeleton": skeleton, "halved": halved, "count": len(tensors),
                "shards": {f.name: sha256_file(f) for f in files}}
    torch.save(manifest, out / "manifest.pt")
    return [out / "manifest.pt", *files]


def join_checkpoint(src_dir: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Rebuild the checkpoint from ``src_dir`` (sha256-checked) and write it to ``dst`` atomically."""
    src = Path(src_dir)
    if not (src / "manifest.pt").is_file():
        raise StylecodecError(f"{src}: no manifest.pt (not a folder written by `split`)")
    manifest = torch.load(src / "manifest.pt", map_location="cpu", weights_only=True)
    tensors: dict[int, torch.Tensor] = {}
    for name, sha in manifest["shards"].items():
        path = src / name
        if not path.is_file() or sha256_file(path) != sha:
            raise StylecodecError(f"{path}: missing or damaged (sha256 differs from the manifest)")
        tensors.update(torch.load(path, map_location="cpu", weights_only=True))
    if len(tensors) != manifest["count"]:
        raise StylecodecError(f"{src}: {len(tensors)} tensors in the shards, the manifest lists {manifest['count']}")
    for i in manifest["halved"]:
        tensors[i] = tensors[i].float()
    dst = Path(dst)
    atomic_torch_save(_fill(manifest["skeleton"], tensors), dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stylecodec.train.transfer", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="action", required=True)
    s = sub.add_parser("split", help="checkpoint -> manifest + shards")
    s.add_argument("checkpoint")
    s.add_argument("out_dir")
    s.add_argument("--max-mib", type=float, default=15)
    s.add_argument("--drop", nargs="*", default=[], help="top-level entries to leave out")
    s.add_argument("--half", action="store_true", help="store float32 tensors as float16")
    j = sub.add_parser("join", help="manifest + shards -> checkpoint")
    j.add_argument("in_dir")
    j.add_argument("checkpoint")
    args = ap.parse_args(argv)
    try:
        if args.action == "split":
            for f in split_checkpoint(args.checkpoint, args.out_dir, args.max_mib, tuple(args.drop), args.half):
                print(f"{f}  {f.stat().st_size / 2**20:.1f} MiB")
        else:
            print(join_checkpoint(args.in_dir, args.checkpoint))
    except StylecodecError as e:
        print(f"transfer: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
