"""Face-image datasets: a folder of images, and packed chunks for carrying data elsewhere.

Every dataset item is a float32 tensor ``[3, R, R]`` in ``[-1, 1]`` (RGB). Splits follow
the project rule: files sorted by name, the LAST ``val_count`` are validation, the rest
train, so validation faces never reach training.

Packed chunks (:func:`pack_images`) hold one split in one file of at most a given size:

- ``.npy``: raw pixels, uint8 ``[N, R, R, 3]``, read memory-mapped (fast, large).
- ``.npz``: JPEG bytes, uint8 blob + int64 offsets + names (about 23x smaller than raw 200x200:
  UTKFace originals average 5.2 KB, so a 60 MiB chunk holds ~11.8k of the 22,707 train faces).

``python -m stylecodec.data --help`` packs from the shell.
"""
from __future__ import annotations

import argparse
import glob
import io
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.nn import functional
from torch.utils.data import ConcatDataset, Dataset

from .errors import StylecodecError
from .files import write_atomic, write_npz
from .images import load_rgb
from .paths import cache_root, shared_dir

__all__ = ["IMAGE_EXTS", "default_data_root", "list_images", "split_files", "pixel_array", "ImageFolder",
           "PackedImages", "pack_images", "open_dataset"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLITS = ("train", "val", "all")


def default_data_root() -> Path:
    """``$STYLECODEC_DATA``, else ``$STYLECODEC_SHARED/data/utkface``, else ``../shared/data/utkface``."""
    if os.environ.get("STYLECODEC_DATA"):
        return Path(os.environ["STYLECODEC_DATA"])

    return shared_dir() / "data" / "utkface"


def list_images(root: str | os.PathLike) -> list[str]:
    """Image file names (not paths) directly inside ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise StylecodecError(f"image folder {root} does not exist")
    names = sorted(n for n in os.listdir(root) if n.lower().endswith(IMAGE_EXTS))
    if not names:
        raise StylecodecError(f"image folder {root} holds no images ({', '.join(IMAGE_EXTS)})")
    return names


def split_files(names: Sequence[str], split: str, val_count: int = 1000) -> list[str]:
    """Sort ``names``; 'val' is the last ``val_count``, 'train' the rest, 'all' everything."""
    if split not in SPLITS:
        raise StylecodecError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    names = sorted(names)
    if split == "all":
        return names
    if val_count < 0 or val_count >= len(names):
        raise StylecodecError(f"{len(names)} images cannot keep {val_count} for validation and still train; "
                              "lower --val-count")
    cut = len(names) - val_count
    return names[:cut] if split == "train" else names[cut:]


def to_tensor(img: np.ndarray, xflip: bool = False) -> torch.Tensor:
    """uint8 ``[R, R, 3]`` -> float32 ``[3, R, R]`` in ``[-1, 1]``, optionally mirrored left-right."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
    return x.flip(2) if xflip else x


def pixel_array(root: str | os.PathLike, split: str, resolution: int, val_count: int = 1000,
                progress: bool = True) -> np.ndarray:
    """uint8 [N, R, R, 3] of a split of an image folder in the training view (:func:`load_rgb`),
    decoded once and kept as ``<cache>/pixels/<folder>-<split>-<R>.npy`` (memory-mapped; for UTKFace's
    22,707 training faces at 128²: 1.1 GB)."""
    from tqdm import tqdm

    root = Path(root)
    names = split_files(list_images(root), split, val_count)
    path = cache_root() / "pixels" / f"{root.resolve().name}-{split}-{int(resolution)}.npy"
    if path.is_file():
        arr = np.load(path, mmap_mode="r")
        if arr.shape == (len(names), resolution, resolution, 3):
            return arr
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.stack([load_rgb(root / n, resolution) for n in tqdm(names, desc=f"decode {split} {resolution}²",
                                                                  disable=not progress, unit="img")])
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


class ImageFolder(Dataset):
    """Images in one folder (UTKFace: 200x200 JPEG) as ``[3, R, R]`` float tensors in ``[-1, 1]``.

    ``files``: use these names (relative to ``root``) instead of listing it; the split is
    still applied to them in sorted order (pass ``split='all'`` to take them as they are).
    ``xflip``: mirror each item with probability 1/2.
    """

    def __init__(self, root: str | os.PathLike, resolution: int, split: str = "train", val_count: int = 1000,
                 files: Sequence[str] | None = None, xflip: bool = False):
        self.root = Path(root)
        if files is None:
            files = list_images(self.root)
        elif not files:
            raise StylecodecError("ImageFolder was given an empty file list")
        self.files = split_files(files, split, val_count)
        self.resolution, self.split, self.xflip = int(resolution), split, xflip

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = load_rgb(self.root / self.files[i], self.resolution)
        return to_tensor(img, self.xflip and bool(torch.rand(()) < 0.5))


class PackedImages(Dataset):
    """A chunk written by :func:`pack_images` (``.npy`` memory-mapped, or ``.npz`` of JPEG bytes
    that also records ``names`` and ``split``).

    Items are ``[3, R, R]`` float tensors in ``[-1, 1]``; ``resolution=None`` keeps the stored
    size (for ``.npz`` of original files, each file's own size).
    """

    def __init__(self, path: str | os.PathLike, resolution: int | None = None, xflip: bool = False):
        self.path = Path(path)
        if not self.path.is_file():
            raise StylecodecError(f"packed image file {self.path} does not exist")
        self.resolution, self.xflip = resolution, xflip
        try:
            if self.path.suffix == ".npy":
                self.pixels = np.load(self.path, mmap_mode="r")
                if self.pixels.dtype != np.uint8 or self.pixels.ndim != 4 or self.pixels.shape[3] != 3:
                    raise ValueError(f"expected uint8 [N,R,R,3], found {self.pixels.dtype} {self.pixels.shape}")
                self.blob = self.offsets = self.split = None
            else:
                with np.load(self.path, allow_pickle=False) as z:
                    self.blob, self.offsets = z["jpeg"], z["offsets"].astype(np.int64)
                    self.names = [str(n) for n in z["names"]]
                    self.split = str(z["split"]) if "split" in z else None
                self.pixels = None
        except (ValueError, KeyError, OSError) as e:
            raise StylecodecError(f"{self.path} is not a packed image file: {e}") from e
        if len(self) == 0:
            raise StylecodecError(f"packed image file {self.path} holds no images")

    def __len__(self) -> int:
        return len(self.pixels) if self.pixels is not None else len(self.offsets) - 1

    def __getitem__(self, i: int) -> torch.Tensor:
        flip = self.xflip and bool(torch.rand(()) < 0.5)
        if self.pixels is None:
            img = load_rgb(self.blob[self.offsets[i]:self.offsets[i + 1]].tobytes(), self.resolution)
            return to_tensor(img, flip)
        x = to_tensor(np.array(self.pixels[i]), flip)
        if self.resolution is not None and x.shape[-1] != self.resolution:
            x = functional.interpolate(x[None], size=(self.resolution,) * 2, mode="bicubic", antialias=True,
                              align_corners=False)[0].clamp_(-1, 1)
        return x


def pack_images(root: str | os.PathLike, out_path: str | os.PathLike, resolution: int | None, split: str = "train",
                limit: int | None = None, start: int = 0, val_count: int = 1000, max_bytes: int | None = None,
                quality: int = 95) -> int:
    """Pack images ``[start, start+limit)`` of a split into one file; return how many were written.

    ``.npy``: uint8 ``[N, R, R, 3]`` pixels (``resolution`` required). ``.npz``: JPEG bytes; with
    ``resolution=None`` the original files' bytes (no re-encoding), else re-encoded at that size
    with ``quality``. ``max_bytes`` stops before the file would exceed that many bytes. The file
    is written under a temporary name and renamed, so a partial file is never left behind.
    """
    out_path = Path(out_path)
    if out_path.suffix not in (".npy", ".npz"):
        raise StylecodecError(f"pack target must end in .npy or .npz, not {out_path.name}")
    if out_path.suffix == ".npy" and resolution is None:
        raise StylecodecError("packing raw pixels (.npy) needs a resolution")
    names = split_files(list_images(root), split, val_count)[start:]
    names = names[:limit] if limit is not None else names
    budget = max_bytes if max_bytes is not None else float("inf")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix == ".npy":  # written in place: a full split need not fit in memory
        names = names[:max(0, int((budget - 128) // (resolution * resolution * 3)))] if max_bytes is not None else names
        if not names:
            raise StylecodecError(f"nothing to pack from {root} (split {split}, start {start}, "
                                  f"max_bytes {max_bytes})")

        def _write(tmp: str) -> None:
            pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                               shape=(len(names), resolution, resolution, 3))
            for i, name in enumerate(names):
                pixels[i] = load_rgb(Path(root) / name, resolution)
            pixels.flush()
            del pixels
        write_atomic(out_path, _write)
        return len(names)
    blobs, blob_bytes, longest = [], 0, 0
    for name in names:
        if resolution is None:
            item = (Path(root) / name).read_bytes()
        else:
            buf = io.BytesIO()
            Image.fromarray(load_rgb(Path(root) / name, resolution)).save(buf, "JPEG", quality=quality)
            item = buf.getvalue()
        n, blob_bytes, longest = len(blobs) + 1, blob_bytes + len(item), max(longest, len(name))
        if 2048 + blob_bytes + 8 * (n + 1) + 4 * longest * n > budget:  # zip/npy headers, offsets,
            break                                                      # fixed-width UTF-32 names
        blobs.append(item)
    if not blobs:
        raise StylecodecError(f"nothing to pack from {root} (split {split}, start {start}, "
                              f"max_bytes {max_bytes})")
    offsets = np.cumsum([0] + [len(b) for b in blobs], dtype=np.int64)
    write_npz(out_path, dict(jpeg=np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets=offsets,
                             names=np.array(names[:len(blobs)]), split=np.array(split)))
    return len(blobs)


def open_dataset(source: str | os.PathLike, resolution: int, split: str = "train", val_count: int = 1000,
                 xflip: bool = False) -> Dataset:
    """An image folder, one packed file, or a glob of packed files (e.g. ``chunks/*.npz``).

    Packed files already hold one split (chosen when packing): ``split`` selects within folders; a
    packed ``.npz`` recording another split is refused (``.npy`` files carry no split record).
    """
    source = str(source)
    if os.path.isdir(source):
        return ImageFolder(source, resolution, split, val_count, xflip=xflip)
    paths = sorted(glob.glob(source)) if any(c in source for c in "*?[") else [source]
    if not paths:
        raise StylecodecError(f"no packed image files match {source}")
    if not all(p.endswith((".npy", ".npz")) for p in paths):
        raise StylecodecError(f"data source {source} is neither an image folder nor packed .npy/.npz files")
    parts = [PackedImages(p, resolution, xflip) for p in paths]
    for part in parts:
        if split != "all" and part.split not in (None, split):
            raise StylecodecError(f"{part.path} holds the {part.split!r} split, not {split!r}")
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def main(argv: list[str] | None = None) -> int:
    """Shell entry: pack a split of an image folder into one file."""
    p = argparse.ArgumentParser(prog="python -m stylecodec.data", description="pack face images into one file")
    p.add_argument("--root", default=str(default_data_root()), help="image folder (default: %(default)s)")
    p.add_argument("--out", required=True, help="output .npy (raw pixels) or .npz (JPEG bytes)")
    p.add_argument("--resolution", type=int, default=None, help="side in pixels (.npz: omit to keep the files)")
    p.add_argument("--split", choices=SPLITS, default="train")
    p.add_argument("--val-count", type=int, default=1000)
    p.add_argument("--start", type=int, default=0, help="first image of the split to pack")
    p.add_argument("--limit", type=int, default=None, help="pack at most this many images")
    p.add_argument("--max-mib", type=float, default=None, help="keep the file under this many MiB")
    a = p.parse_args(argv)
    max_bytes = int(a.max_mib * 2**20) if a.max_mib else None
    try:
        n = pack_images(a.root, a.out, a.resolution, a.split, a.limit, a.start, a.val_count, max_bytes)
    except StylecodecError as e:
        print(f"pack: error: {e}", file=sys.stderr)
        return 1
    print(f"packed {n} images ({a.split}, from #{a.start}) into {a.out} ({os.path.getsize(a.out) / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
