"""Bytes and information per layer at every quality: is the rate monotonic in the quality index?

    python experiments/rate_per_quality.py --model pretrained/default.pt --limit 200

For the first ``--limit`` held-out faces (files sorted by name, the last ``--val-count`` are
validation; loaded as the codec trains on them) and every quality: the whole file, each layer's
payload, and each layer's ideal bytes (−log2 p under the coding tables, no coder overhead). Prints the
means and on how many faces a quantity falls somewhere when the quality rises; then the same for
the sample face (``samples/``, centre square).
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from stylecodec.bitstream import unpack  # noqa: E402
from stylecodec.codec import Codec  # noqa: E402
from stylecodec.data import list_images, split_files  # noqa: E402
from stylecodec.images import load_rgb  # noqa: E402
from stylecodec.layers import LAYER_NAMES  # noqa: E402


def sizes(codec: Codec, ys) -> tuple[np.ndarray, np.ndarray]:
    """([Q, 4] bytes: file, basic, middle, enhanced payloads), ([Q, 3] ideal bytes per layer)."""
    payload, ideal = [], []
    for q in codec.quality_range:
        stats: list = []
        data = codec.compress_latents(ys, q, stats=stats)[0]
        payload.append([len(data)] + [len(p) for p in unpack(data)[1]])
        ideal.append([b / 8 for b in stats[0]["ideal_bits"]])
    return np.array(payload), np.array(ideal)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "pretrained", "default.pt"))
    ap.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "data", "utkface"))
    ap.add_argument("--val-count", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--sample", default=os.path.join(ROOT, "samples", "astronaut_eileen_collins.png"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    codec = Codec.from_pretrained(args.model)
    files = split_files(list_images(args.images), "val", args.val_count)[:args.limit]
    pay, ide = zip(*(sizes(codec, codec.encode_latents(codec.preprocess(
        load_rgb(os.path.join(args.images, f), codec.resolution), aligned=True))) for f in files))
    pay, ide = np.stack(pay), np.stack(ide)                     # [N, Q, 4], [N, Q, 3]
    print(f"{len(files)} held-out faces, qualities {list(codec.quality_range)}; mean bytes per quality, and the "
          f"faces on which the quantity falls somewhere as the quality rises")
    for k, name in enumerate(["file"] + [f"{n} payload" for n in LAYER_NAMES]):
        falls = np.diff(pay[:, :, k], axis=1) < 0
        print(f"  {name:<18} {np.round(pay[:, :, k].mean(0), 1)}  falls on {int(falls.any(1).sum())} faces "
              f"(per step {falls.sum(0).tolist()})")
    for k, name in enumerate(LAYER_NAMES):
        falls = np.diff(ide[:, :, k], axis=1) < 0
        print(f"  {name + ' ideal':<18} {np.round(ide[:, :, k].mean(0), 2)}  falls on {int(falls.any(1).sum())} faces "
              f"(per step {falls.sum(0).tolist()})")
    p, i = sizes(codec, codec.encode_latents(codec.preprocess(args.sample)))
    print(f"sample {os.path.basename(args.sample)}: per quality (file; basic, middle, enhanced payload) / ideal bytes")
    for q in codec.quality_range:
        print(f"  q{q}: {p[q, 0]} B; {p[q, 1:].tolist()} / {np.round(i[q], 1).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
