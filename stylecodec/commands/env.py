"""`stylecodec env`: what this installation has (versions, devices, anchors, data, assets)."""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import subprocess
from pathlib import Path

from ..paths import shared_dir

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).

# (import name, distribution name)
_PACKAGES = [("torch", "torch"), ("torchvision", "torchvision"), ("numpy", "numpy"),
             ("compressai", "compressai"), ("timm", "timm"), ("lpips", "lpips"),
             ("cv2", "opencv-python-headless"), ("facenet_pytorch", "facenet-pytorch"),
             ("dlib", "dlib-bin"), ("imageio_ffmpeg", "imageio-ffmpeg"), ("tensorboard", "tensorboard")]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shared", type=Path, default=None, help="the shared data folder (default: ../shared)")




def ffmpeg_encoders() -> dict[str, bool]:
    """Which of the anchor encoders the bundled FFmpeg has."""
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60).stdout
    return {name: f" {name} " in out for name in ("libvvenc", "libx265", "libaom-av1", "libsvtav1", "libjxl")}


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import __version__
    from ..assets.fetch import cache_dir

    print(f"stylecodec {__version__}")
    for name, dist in _PACKAGES:
        try:
            importlib.import_module(name)
            print(f"  {name:<16} {importlib.metadata.version(dist)}")
        except Exception as e:  # report, do not fail: this is a diagnosis command
            print(f"  {name:<16} MISSING ({type(e).__name__}: {e})")
    print(f"torch threads: {torch.get_num_threads()}  cuda: {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
    try:
        print("ffmpeg encoders: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in ffmpeg_encoders().items()))
    except Exception as e:
        print(f"ffmpeg encoders: unavailable ({e})")
    cache = cache_dir()
    cached = sorted(p.name for p in cache.glob("*") if p.is_file())
    print(f"asset cache: {cache} ({', '.join(cached) or 'empty'})")
    shared = args.shared or shared_dir()
    for sub in ("data/utkface", "data/lfw", "data/lfw_pairs.csv"):
        p = shared / sub
        n = sum(1 for _ in p.iterdir()) if p.is_dir() else (1 if p.exists() else 0)
        print(f"shared {sub:<20} {'found, ' + str(n) + (' files' if p.is_dir() else ' file') if n else 'absent'}")
    return 0
