"""Probe: does searching the coded eigenface symbols through the decoder beat plain rounding?

    OMP_NUM_THREADS=1 python experiments/encoder_search_probe.py --faces 900:916 --steps 40

Per face: the default stream (``Codec.compress``), then its middle + enhanced latents optimised
at the stream's quality through the emulated coder (straight-through rounding) and the refiner,
loss L1 + w_mse·MSE + w_lpips·LPIPS-VGG + w_id·(1 - cos facenet) (+ a penalty on bits above the
plain stream's); the basic layer is left as it is. Both streams are decoded by the real decoder and
scored (PSNR, LPIPS-Alex, SFace, dlib). Prints a per-face line and the means.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from stylecodec.assets.facenet import load_facenet
from stylecodec.assets.lpips import load_lpips
from stylecodec.bitstream import extract
from stylecodec.codec import Codec
from stylecodec.data import default_data_root, list_images, split_files
from stylecodec.eval.measure import Measurer, Reference
from stylecodec.images import load_rgb
from stylecodec.train.refiner import _facenet_embedding, _identity_cos  # the trainer's identity loss

METRICS = ("psnr", "lpips_alex", "id_sface", "dist_dlib")


def search(codec, ys, quality, x, a, nets):
    model = codec.model
    lp, fn = nets
    y0 = ys[0].float()
    g, _ = model.gains(quality, 1, torch.float32)
    o = model.offsets
    g1, g2 = g[:, o[1]:o[2]], g[:, o[2]:o[3]]
    u1 = (ys[1].float() * g1).clone().requires_grad_(True)      # coding domain: one step = 1
    u2 = (ys[2].float() * g2).clone().requires_grad_(True)
    opt = torch.optim.Adam([u1, u2], lr=a.lr)
    with torch.no_grad():
        target_id = _facenet_embedding(fn, x)
        bits0 = model.bits(model.forward([y0, ys[1].float(), ys[2].float()], quality, "ste")).sum()
    best = None
    for it in range(a.steps):
        out = model.forward([y0, u1 / g1, u2 / g2], quality, "ste", render=True)
        xh = out["x_hat"][3]
        bits = model.bits(out).sum()
        d = (xh - x).abs().mean() + a.w_mse * (xh - x).square().mean()
        d = d + a.w_lpips * lp(xh, x).mean() + a.w_id * (1 - _identity_cos(fn, xh, target_id)).mean()
        loss = d + a.w_rate * F.relu(bits - bits0) / 8
        if best is None or loss.item() < best[0]:
            best = (loss.item(), [y0.double(), (u1 / g1).detach().double(), (u2 / g2).detach().double()])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return best[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", default="900:916", help="slice of the 1,000 held-out faces")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--w-mse", type=float, default=5.0)
    p.add_argument("--w-lpips", type=float, default=1.0)
    p.add_argument("--w-id", type=float, default=0.1)
    p.add_argument("--w-rate", type=float, default=0.05)
    p.add_argument("--lpips-net", default="vgg")
    a = p.parse_args()
    root = default_data_root()
    lo, hi = (int(v) for v in a.faces.split(":"))
    names = split_files(list_images(root), "val", 1000)[lo:hi]
    codec = Codec.from_pretrained("default")
    model = codec.model
    model.train()                                  # batch path + oneDNN in render; no dropout / BN in the model
    model.requires_grad_(False)
    nets = (load_lpips(a.lpips_net), load_facenet())
    measurer = Measurer(("ms_ssim", "lpips_vgg", "facenet"))
    sums = {k: [] for k in ("plain", "search")}
    t0 = time.time()
    for name in names:
        face = load_rgb(root / name, 256)
        plain = codec.compress(face, aligned=True)
        header, _ = codec.read_stream(plain)
        x = codec.preprocess(face, aligned=True)
        ys = codec.encode_latents(x)
        ys2 = search(codec, ys, header.quality, x, a, nets)
        model.eval()
        found = codec.compress_latents(ys2, header.quality)[0]
        basic_same = extract(found, 1) == extract(plain, 1)
        dec = [codec.decompress(s, 3, output="array") for s in (plain, found)]
        model.train()
        vals, _ = measurer.measure(Reference(face), dec)
        for k, v in zip(sums, vals):
            sums[k].append([v[m] for m in METRICS] + [len(plain if k == "plain" else found)])
        print(f"{name} q{header.quality} bytes {len(plain)}->{len(found)} basic same {basic_same} "
              + " | ".join(" ".join(f"{m} {v[m]:.3f}" for m in METRICS) for v in vals)
              + f"  {time.time() - t0:.0f} s", flush=True)
    for k, rows in sums.items():
        m = np.mean(rows, 0)
        print(f"{k:7s} " + " ".join(f"{n} {v:.4f}" for n, v in zip(METRICS + ("bytes",), m)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
