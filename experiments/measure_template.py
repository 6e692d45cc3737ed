"""Measure the 5-point face template of the training data (UTKFace "aligned & cropped", 200x200).

    python experiments/measure_template.py [--count 200] [--data ../shared/data/utkface]

Runs MTCNN (as :func:`stylecodec.align.detect_faces` does: on a copy with a black border of
``DETECT_PAD``) on ``--count`` train-split images (sorted names minus the last 1,000; every
k-th, evenly spread), normalises the five points of the most confident face to [0, 1] as
``(pixel + 0.5) / side`` and prints the per-coordinate medians: the numbers committed as
``stylecodec.align.TEMPLATE_5``. It also prints the distribution of the layout error
(:func:`stylecodec.align.layout_error`: mean point distance to the template in units of the
template's inter-ocular distance) over the same images, from which ``AUTO_THRESHOLD`` (the
``--align auto`` cut between "already aligned" and "align it") was chosen.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from PIL import Image

from stylecodec.align import detect_faces, layout_error
from stylecodec.data import default_data_root, list_images, split_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(default_data_root()))
    ap.add_argument("--count", type=int, default=200)
    args = ap.parse_args()
    names = split_files(list_images(args.data), "train")
    step = max(1, len(names) // args.count)
    chosen = names[::step][:args.count]
    t0 = time.perf_counter()
    pts, missed = [], 0
    for name in chosen:
        img = np.asarray(Image.open(f"{args.data}/{name}").convert("RGB"))
        faces = detect_faces(img, "mtcnn")                   # confidence >= 0.9, on a padded copy
        if not faces:
            missed += 1
            continue
        best = max(faces, key=lambda f: f[1])
        pts.append((best[2] + 0.5) / np.array([img.shape[1], img.shape[0]], np.float32))
    pts = np.stack(pts)                                        # [K, 5, 2] normalised
    template = np.median(pts, axis=0)
    errs = np.array([layout_error(p, template) for p in pts])
    print(f"{len(pts)} faces measured ({missed} without a confident face) in {time.perf_counter() - t0:.0f} s")
    print("TEMPLATE_5 = (  # (x, y) in [0, 1]: left eye, right eye, nose tip, left / right mouth corner")
    for (x, y) in template:
        print(f"    ({x:.4f}, {y:.4f}),")
    print(")")
    print("spread (IQR) per point:", json.dumps(np.round(np.percentile(pts, 75, 0) - np.percentile(pts, 25, 0),
                                                        4).tolist()))
    print("layout error on these images: " + ", ".join(
        f"p{q} {np.percentile(errs, q):.3f}" for q in (50, 90, 95, 99, 100)))


if __name__ == "__main__":
    main()
