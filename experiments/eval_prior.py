"""Measure a trained prior G: sample grid, Fréchet distance in SFace space, forward time.

    python experiments/eval_prior.py --prior runs/prior_cpu64/prior.pt [--n 5000] [--out experiments/results/prior_cpu64]

Sets compared, each against the same held-out real faces (the last 1,000 UTKFace files by name):
  generated  n faces from G_ema (z ~ N(0, I), truncation 1, noise const)
  real       n training faces (disjoint from held-out): the floor of the distance
  degraded   the same n training faces, Gaussian blur (sigma = R/32) + noise (sigma = 0.1): a baseline
Every image is first brought to G's resolution R (what G can represent at best), then SFace
embeds it without detection (aligned crops, centre-resized to 112x112) so every set is treated
alike. Writes grid.png (8x8 samples) and prior_metrics.json in --out.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from tqdm import tqdm

from stylecodec.assets.sface import SFaceJudge
from stylecodec.data import default_data_root, list_images, load_rgb, split_files
from stylecodec.gan import load_checkpoint
from stylecodec.metrics.frechet import frechet_distance


def generate(G, n: int, batch: int, seed: int) -> np.ndarray:
    """n uint8 images (n, R, R, 3) from G_ema with fixed seeds."""
    g = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, n, batch), desc="generate", unit="batch"):
            z = torch.randn(min(batch, n - i), G.z_dim, generator=g)
            img = G(z, None, noise_mode="const")
            out.append(((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r = img.shape[0]
    blurred = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius=r / 32)), np.float32)
    noisy = blurred + rng.normal(0, 0.1 * 255 / 2, blurred.shape)   # sigma 0.1 in [-1, 1] units
    return np.clip(noisy, 0, 255).round().astype(np.uint8)


def embed(judge: SFaceJudge, images, desc: str, batch: int = 256) -> np.ndarray:
    feats = [judge.embed(images[i:i + batch], detect=False)
             for i in tqdm(range(0, len(images), batch), desc=f"SFace {desc}", unit="batch")]
    return np.concatenate(feats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("experiments/results/prior"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    G = load_checkpoint(args.prior).eval()
    R = G.img_resolution

    gen = generate(G, args.n, 64, args.seed)
    grid = gen[:64].reshape(8, 8, R, R, 3).transpose(0, 2, 1, 3, 4).reshape(8 * R, 8 * R, 3)
    Image.fromarray(grid).save(args.out / "grid.png", optimize=True)

    names = list_images(args.data)
    held_out = split_files(names, "val")
    train = random.Random(args.seed).sample(split_files(names, "train"), args.n)
    real_val = np.stack([load_rgb(args.data / f, R) for f in tqdm(held_out, desc="load held-out")])
    real_train = np.stack([load_rgb(args.data / f, R) for f in tqdm(train, desc="load train")])
    rng = np.random.default_rng(args.seed)
    degraded = np.stack([degrade(im, rng) for im in real_train])

    judge = SFaceJudge()
    ref = embed(judge, real_val, "held-out")
    results = {"prior": str(args.prior), "resolution": R, "n": args.n, "n_held_out": len(held_out),
               "space": "SFace (128-d, no detection, centre-resized to 112)"}
    for name, images in (("generated", gen), ("real_train", real_train), ("blur_noise", degraded)):
        fd = frechet_distance(embed(judge, images, name), ref, space="SFace")
        results[f"FD-SFace/{name}"] = fd.value
        print(f"{fd.name:9s} {name:11s} vs held-out: {fd.value:.4f}", flush=True)

    x = torch.randn(8, G.z_dim)
    with torch.no_grad():
        G(x[:1], None, noise_mode="const")
        for b in (1, 8):
            t0 = time.perf_counter()
            G(x[:b], None, noise_mode="const")
            results[f"forward_ms_per_image_batch{b}"] = 1000 * (time.perf_counter() - t0) / b
    results["threads"] = args.threads
    (args.out / "prior_metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
