"""LFW verification of VVC-coded faces at several QPs, judged by SFace and by facenet (issue 16's curve).

The harness's protocol (``stylecodec.eval.lfw``): image_a of each pair aligned as ``verify-lfw``
aligns it (5 points, 256², centre square without a face), coded with VVC (vvenc) at each QP and
decoded; image_b original; 10-fold accuracy. Each decoded face is embedded by both judges (VVC runs
once per image and QP). ``--pairs N`` takes N pairs balanced over the folds (all 6,000 take about
1.5 s per image and QP on one core).

    python experiments/lfw_vvc_curve.py --qps 63,55,47 --pairs 300 [--out JSON]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--qps", default="63,55,47")
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    import torch

    from stylecodec.anchors import get_anchor
    from stylecodec.eval.align_cache import AlignmentCache, content_key
    from stylecodec.eval.lfw import pixel_embedder, select_pairs
    from stylecodec.metrics.verification import default_pairs_csv, lfw_verification, read_pairs
    from stylecodec.paths import cache_root

    torch.set_num_threads(1)
    csv_path = default_pairs_csv()
    pairs = select_pairs(read_pairs(csv_path), a.pairs)
    align = AlignmentCache(cache_root() / "align", 256)
    vvc = get_anchor("vvc")
    judges = {j: pixel_embedder(j, cache=True) for j in ("sface", "facenet")}
    rows = []
    t0 = time.time()
    for qp in [int(q) for q in a.qps.split(",")]:
        decoded: dict[str, np.ndarray] = {}
        sizes: list[int] = []

        def code(img: np.ndarray, qp=qp, decoded=decoded, sizes=sizes) -> np.ndarray:
            key = content_key(img)
            if key not in decoded:
                enc, rec = vvc.roundtrip(align.aligned(img)[0], qp)
                decoded[key] = rec
                sizes.append(enc.nbytes)
            return decoded[key]

        row = {"qp": qp}
        for j, fn in judges.items():
            res = lfw_verification(fn, pairs, csv_path.parent / "lfw", transform_a=code, batch_size=32, progress=False)
            row[j] = {"accuracy": res.mean, "std": res.std}
        row["bytes_mean"] = float(np.mean(sizes))
        row["bpp_mean"] = 8 * row["bytes_mean"] / 256 ** 2
        rows.append(row)
        print(f"VVC QP {qp}: {row['bytes_mean']:.1f} B ({row['bpp_mean']:.4f} bpp): SFace {100 * row['sface']['accuracy']:.2f} %,"
              f" facenet {100 * row['facenet']['accuracy']:.2f} %  ({time.time() - t0:.0f} s)", flush=True)
    align.save()
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"pairs": len(pairs), "protocol": "image_a aligned + VVC-coded, image_b original",
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
