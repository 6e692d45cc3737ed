"""CPU speed and entropy-coding overhead of the codec on a folder of face images.

    python experiments/bench_codec.py --model pretrained/default.pt -n 20
    python experiments/bench_codec.py --tiny -n 20        # tiny RANDOM model (mechanics only)
    python experiments/bench_codec.py --random-default -n 5   # the default 256² architecture, RANDOM
                                                              # weights: speed only (rates mean nothing)

Per image (torch threads: --threads, default 2): encode time (read + align + E + analysis, then
entropy coding) at --quality (default: the highest), decode time (entropy decoding, then
synthesis transforms + G), and for every quality the whole-file bytes, the payload bytes per
layer and the ideal bytes (sum of −log2 p under the coding tables / 8). The coding overhead is
payload − ideal (per layer and per file) and payload / ideal; container bytes (bitstream version 2:
3 header + 1 CRC per layer + 1 length per layer but the last) are reported separately.
Images: the last N files (sorted by name) of --images (default ../shared/data/utkface).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def _summary(xs) -> str:
    return f"mean {statistics.mean(xs):8.2f}  median {statistics.median(xs):8.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="model name or checkpoint path")
    arch = ap.add_mutually_exclusive_group()
    arch.add_argument("--tiny", action="store_true", help="benchmark a tiny random model built on the fly")
    arch.add_argument("--random-default", action="store_true",
                      help="the default 256² architecture with random weights (timings only)")
    ap.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "data", "utkface"))
    ap.add_argument("-n", type=int, default=20, help="number of images (the last N of the folder)")
    ap.add_argument("--quality", type=int, help="quality for the timings (default: the highest)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from stylecodec.bitstream import unpack
    from stylecodec.codec import Codec

    torch.set_num_threads(args.threads)
    if args.tiny or args.random_default:
        from stylecodec.model import StyleCodecModel, default_config, tiny_config
        from stylecodec.zoo import save_model

        torch.manual_seed(0)
        name = "tiny" if args.tiny else "random_default"
        args.model = os.path.join(tempfile.mkdtemp(), f"{name}.pt")
        save_model(StyleCodecModel(tiny_config() if args.tiny else default_config()), args.model,
                   {"note": "random weights (benchmark only)"}, storage="fp32" if args.tiny else "fp16")
    codec = Codec.from_pretrained(args.model)
    q_time = codec.quality_range[-1] if args.quality is None else args.quality
    files = sorted(f for f in os.listdir(args.images) if f.lower().endswith((".jpg", ".jpeg", ".png")))[-args.n:]
    if not files:
        print(f"no images in {args.images}", file=sys.stderr)
        return 1
    paths = [os.path.join(args.images, f) for f in files]
    codec.decompress(codec.compress(paths[0], quality=q_time))          # warm-up (allocators, tables)

    enc_pre, enc_code, dec_entropy, dec_synth = [], [], [], []
    per_q = {q: {"file": [], "payload": [], "ideal": [], "layers": []} for q in codec.quality_range}
    for path in paths:
        t0 = time.perf_counter()
        with torch.no_grad():
            ys = codec.encode_latents(codec.preprocess(path))
        enc_pre.append(_ms(t0))
        t0 = time.perf_counter()
        data = codec.compress_latents(ys, q_time)[0]
        enc_code.append(_ms(t0))
        t0 = time.perf_counter()
        y_hat, _ = codec.decode_y(data)
        dec_entropy.append(_ms(t0))
        t0 = time.perf_counter()
        with torch.no_grad():
            ws = codec.model.transforms.synthesise(y_hat)
            codec.model.G.synthesis(ws, noise_mode="const")
        dec_synth.append(_ms(t0))
        for q in codec.quality_range:
            stats: list = []
            data = codec.compress_latents(ys, q, stats)[0]
            per_q[q]["file"].append(len(data))
            payloads = unpack(data)[1]
            per_q[q]["payload"].append(sum(len(p) for p in payloads))
            per_q[q]["ideal"].append(sum(stats[0]["ideal_bits"]) / 8)
            per_q[q]["layers"].append([len(p) - b / 8 for p, b in zip(payloads, stats[0]["ideal_bits"])])

    r = codec.resolution
    print(f"model {args.model} ({r}x{r}, fingerprint 0x{codec.fingerprint:04x}), {len(paths)} images from "
          f"{os.path.abspath(args.images)}, torch threads {torch.get_num_threads()}, CPU")
    print(f"timings in ms per image at quality {q_time}:")
    enc = [a + b for a, b in zip(enc_pre, enc_code)]
    dec = [a + b for a, b in zip(dec_entropy, dec_synth)]
    for name, xs in (("encode total", enc), ("  read+align+E+analysis", enc_pre), ("  entropy coding", enc_code),
                     ("decode total", dec), ("  entropy decoding", dec_entropy), ("  synthesis + G", dec_synth)):
        print(f"  {name:24s} {_summary(xs)}")
    print("rate per quality (means over images): file bytes, bpp, payload bytes, ideal bytes, payload/ideal, "
          "coder bytes above the ideal per layer")
    for q, d in per_q.items():
        f, p, i = (statistics.mean(d[k]) for k in ("file", "payload", "ideal"))
        ratio = sum(d["payload"]) / max(sum(d["ideal"]), 1e-9)
        per_layer = " / ".join(f"{statistics.mean(x):+.2f}" for x in zip(*d["layers"]))
        print(f"  q{q:<2d} {f:7.2f} B  {8 * f / r ** 2:.5f} bpp  payload {p:6.2f} B  ideal {i:6.2f} B  "
              f"ratio {ratio:5.3f}  (+{p - i:.2f} B coder: {per_layer}; +{f - p:.2f} B container)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
