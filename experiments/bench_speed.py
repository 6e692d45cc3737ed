"""Encode / decode wall time per image: stylecodec and every anchor, same images, same run.

    python experiments/bench_speed.py --model pretrained/default.pt --images ../shared/data/utkface -n 10
    python experiments/bench_speed.py --model random-default -n 5     # untrained default-size model
    python experiments/bench_speed.py --model random-tiny -n 3        # tiny random model (mechanics)
    python experiments/bench_speed.py --model default --search-steps 40 -n 10 --threads 1 --anchors ""   # the encoder search

Timings do not depend on trained weights, so ``random-default`` (the default config, random
weights) times the shipped architecture before a trained model exists. Devices: CPU with
``--threads`` torch threads (default 2; VVC gets the same thread count) and CUDA when available
(networks on the GPU; the entropy coder always runs in float64 on the CPU). Anchors run on the
CPU once, at a low-rate setting each (VVC QP 63, HEVC QP 51, AV1 CRF 63, JPEG XL distance 15,
JPEG quality 5). Each codec gets one untimed warm-up. stylecodec encode = E + transforms +
entropy coding of the aligned face; decode = entropy decoding + synthesis + G (basic only, all).
Images: the last N of --images sorted by name (the held-out end of UTKFace), else samples/.
Writes --out (csv, one row per device x codec x image) and prints medians.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

LOW_RATE = {"vvc": 63, "hevc": 51, "av1": 63, "jxl": 15.0, "jpeg": 5}


def build_codec(name: str, device: str, search_steps: int = 0):
    import torch

    from stylecodec.codec import Codec
    from stylecodec.model import StyleCodecModel, default_config, tiny_config

    if name in ("random-default", "random-tiny"):
        torch.manual_seed(0)
        cfg = default_config() if name == "random-default" else tiny_config()
        return Codec(StyleCodecModel(cfg).to(device)).set_search(search_steps)
    return Codec.from_pretrained(name, device=device, search_steps=search_steps)


def faces(args, resolution: int):
    import numpy as np

    from stylecodec.images import centre_square, load_image
    from stylecodec.batch import find_images
    from stylecodec.eval.samples import find_samples

    if args.images and os.path.isdir(args.images):
        paths = [os.path.join(args.images, n) for n in find_images(args.images)[-args.n:]]
    else:
        paths = [str(p) for p in find_samples()][: args.n]
    if not paths:
        sys.exit("no images: pass --images DIR (or run experiments/make_samples.py)")
    return [(os.path.basename(p), np.asarray(centre_square(load_image(p), resolution))) for p in paths]


def timed(fn, sync=None):
    t0 = time.perf_counter()
    out = fn()
    if sync:
        sync()
    return out, time.perf_counter() - t0


def bench_stylecodec(codec, images, quality, device):
    """Rows at ``quality`` or, when None, at the highest quality and (for a model with a rate
    budget) at the default setting (``compress(img)``: the highest quality within the budget,
    so it may entropy-code several qualities)."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    settings = [codec.quality_range[-1] if quality is None else quality]
    if quality is None and codec.default_budget != (None, None):
        settings.append("default")
    search = f"+search{codec.search.config.steps}" if codec.search else ""
    rows = []
    for q in settings:
        kw = {} if q == "default" else {"quality": q}
        codec.decompress(codec.compress(images[0][1], **kw), "enhanced")          # warm-up
        for name, img in images:
            data, enc = timed(lambda: codec.compress(img, **kw), sync)
            _, dec_b = timed(lambda: codec.decompress(data, "basic", output="array"), sync)
            _, dec_a = timed(lambda: codec.decompress(data, "enhanced", output="array"), sync)
            rows.append({"codec": "stylecodec", "setting": (q if q == "default" else f"q{q}") + search, "image": name,
                         "bytes": len(data), "encode_s": enc, "decode_s": dec_a, "decode_basic_s": dec_b})
    return rows


def bench_anchor(name, images, threads):
    from stylecodec.anchors import get_anchor

    a = get_anchor(name, threads=threads) if name == "vvc" else get_anchor(name)
    q = LOW_RATE[name]
    a.roundtrip(images[0][1], q)                                                     # warm-up
    rows = []
    for img_name, img in images:
        enc, _ = a.roundtrip(img, q)
        rows.append({"codec": name, "setting": f"{a.quality_name}{q:g}", "image": img_name, "bytes": enc.nbytes,
                     "encode_s": enc.meta["encode_s"], "decode_s": enc.meta["decode_s"], "decode_basic_s": ""})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="name, checkpoint, random-default or random-tiny")
    ap.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "data", "utkface"))
    ap.add_argument("-n", type=int, default=10, help="number of images")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (and VVC's)")
    ap.add_argument("--devices", default="cpu,cuda", help="cpu and/or cuda (cuda skipped when unavailable)")
    ap.add_argument("--anchors", default="vvc,hevc,av1,jxl,jpeg")
    ap.add_argument("--quality", type=int, help="stylecodec quality (default: the highest, and the model's "
                                                "default rate budget when it has one)")
    ap.add_argument("--search-steps", type=int, default=0,
                    help="the encoder's search of the pixel latents, steps per face (stylecodec.latent_search; 0: off)")
    ap.add_argument("--out", default=os.path.join(ROOT, "experiments", "results", "speed.csv"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    rows = []
    images = None
    for device in [d.strip() for d in args.devices.split(",") if d.strip()]:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"{device}: not available, skipped")
            continue
        codec = build_codec(args.model, device, args.search_steps)
        images = images or faces(args, codec.resolution)
        label = f"{device} ({torch.cuda.get_device_name() if device.startswith('cuda') else f'{args.threads} threads'})"
        rows += [{"device": label, **r} for r in bench_stylecodec(codec, images, args.quality, device)]
        if device == "cpu":
            for name in [a.strip() for a in args.anchors.split(",") if a.strip()]:
                rows += [{"device": label, **r} for r in bench_anchor(name, images, args.threads)]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["device", "codec", "setting", "image", "bytes", "encode_s", "decode_s",
                                           "decode_basic_s"])
        w.writeheader()
        w.writerows(rows)
    print(f"{len(images or [])} images, model {args.model}; median seconds per image (csv: {args.out})\n")
    print(f"{'device':<28} {'codec':<11} {'setting':<12} {'bytes':>7} {'encode':>8} {'decode':>8} {'dec basic':>9}")
    keys = dict.fromkeys((r["device"], r["codec"], r["setting"]) for r in rows)
    for dev, codec, setting in keys:
        rs = [r for r in rows if (r["device"], r["codec"], r["setting"]) == (dev, codec, setting)]
        med = lambda k: statistics.median(float(r[k]) for r in rs) if rs[0][k] != "" else float("nan")  # noqa: E731
        print(f"{dev:<28} {codec:<11} {setting:<12} {med('bytes'):>7.0f} {med('encode_s'):>8.3f} "
              f"{med('decode_s'):>8.3f} {med('decode_basic_s'):>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
