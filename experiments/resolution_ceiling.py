"""What the decoder's working resolution alone costs: held-out faces resized to P² and back to 256².

    OMP_NUM_THREADS=1 python experiments/resolution_ceiling.py --limit 1000 --sizes 128,64

The machine-first decoder makes its face at P = 128 (eigenfaces + refiner) and upsamples it bicubically
to the 256² face the user gets and the metrics read. A *perfect* P² decoder therefore scores at best what
the original, resized to P² the way the model sees its training targets
(``stylecodec.machine_first.downsample``: bicubic with antialias) and upsampled the way the decoder does
(``upsample``: bicubic), scores. This script measures that ceiling with issue 17's metrics (PSNR, LPIPS-Alex, SFace cosine, dlib
distance) on the held-out faces of ``faces_heldout.py``; it says whether a goal is out of reach of any
P² decoder, whatever its training.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from stylecodec.data import default_data_root, list_images, split_files
from stylecodec.eval.measure import Measurer, Reference
from stylecodec.images import load_rgb
from stylecodec.machine_first import downsample, upsample

SKIP = ("ms_ssim", "lpips_vgg", "facenet", "dlib")
METRICS = ("psnr", "lpips_alex", "id_sface", "dist_dlib")


def round_trip(face: np.ndarray, p: int) -> np.ndarray:
    """256² uint8 -> P² (bicubic, antialias) -> 256² (bicubic), uint8: the decoder's resampling, no coding."""
    x = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 127.5 - 1
    big = upsample(downsample(x, p), face.shape[0])
    return ((big[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=1000, help="first N held-out faces (default 1000)")
    p.add_argument("--val-count", type=int, default=1000)
    p.add_argument("--sizes", default="128,64", help="comma list of working resolutions P")
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    root = default_data_root()
    names = split_files(list_images(root), "val", a.val_count)[:a.limit]
    measurer = Measurer(SKIP)
    vals = {s: {m: [] for m in METRICS} for s in sizes}
    for name in tqdm(names, desc="faces", unit="face"):
        face = load_rgb(root / name, 256)
        rows, _ = measurer.measure(Reference(face), [round_trip(face, s) for s in sizes])
        for s, row in zip(sizes, rows):
            for m in METRICS:
                vals[s][m].append(row[m])
    print(f"{len(names)} held-out UTKFace faces, original -> P² -> 256² (no coding)\n")
    print("| P | PSNR dB | LPIPS-Alex | SFace cos | dlib dist |\n|---|---|---|---|---|")
    for s in sizes:
        print(f"| {s} | " + " | ".join(f"{np.mean(vals[s][m]):.{2 if m == 'psnr' else 3}f}" for m in METRICS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
