"""Rate of a codec model on the held-out faces: bytes of every stream a user can hold.

    python experiments/rate_heldout.py --model pretrained/default.pt            # all 1,000 held-out faces
    python experiments/rate_heldout.py --model M --limit 100 --out results.json

For each face of the held-out split (the last --val-count files by name of --images, loaded as
the codec trains on them: centre square, resized to the model resolution, no alignment) the
script compresses at the highest quality, at ``--bpp 0.01`` (the highest quality whose whole
file fits), with both budgets ``--bpp 0.01 --basic-bpp 0.003`` (the highest quality whose whole
file and basic layer alone both fit) and as ``stylecodec compress`` does without rate options
(``Codec.compress(face)``: the model's own budget), then measures the whole file, the
basic layer extracted alone (`stylecodec extract --layers basic`), basic + middle, and each
layer's payload; at the default setting also the entropy coder's bytes above the ideal (−log2 p
under the coding tables) per layer and per file, and the container bytes. Every byte of each file counts (header and layer records included);
bpp = 8 bytes / R². Prints means, maxima, the share of faces within 0.01 bpp (whole file) and
0.003 bpp (basic alone) and the qualities the budgets chose, and writes them as JSON. No
decoding, no quality metrics (see `stylecodec eval`).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="model name or checkpoint path")
    ap.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "data", "utkface"))
    ap.add_argument("--val-count", type=int, default=1000, help="held-out split: the last N files by name")
    ap.add_argument("--limit", type=int, default=None, help="only the first N held-out faces")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bpp", type=float, default=0.01, help="whole-file budget (default 0.01)")
    ap.add_argument("--basic-bpp", type=float, default=0.003, help="basic-layer budget (default 0.003)")
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    args = ap.parse_args()

    import numpy as np
    import torch
    from tqdm import tqdm

    from stylecodec.bitstream import extract, unpack
    from stylecodec.codec import Codec
    from stylecodec.rate import choose_quality, stream_sizes
    from stylecodec.data import ImageFolder

    torch.set_num_threads(args.threads)
    codec = Codec.from_pretrained(args.model)
    r, top = codec.resolution, codec.quality_range.stop - 1
    faces = ImageFolder(args.images, r, "val", args.val_count)
    n = len(faces) if args.limit is None else min(args.limit, len(faces))
    rows, t0 = [], time.perf_counter()
    for i in tqdm(range(n), desc="compress", unit="face"):
        x = faces[i][None]
        img = ((x[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        default = codec.compress(img)                   # the real default path, end to end
        ys = codec.encode_latents(codec.preprocess(img))
        stream = functools.cache(lambda q, ys=ys: codec.compress_latents(ys, q)[0])
        sizes = lambda q, stream=stream: stream_sizes(stream(q))          # noqa: E731
        data = stream(top)
        fit_q, fit_ok = choose_quality(codec.quality_range, sizes, r, args.bpp)
        both_q, both_ok = choose_quality(codec.quality_range, sizes, r, args.bpp, args.basic_bpp)
        fit, both = stream(fit_q), stream(both_q)
        fit_q, both_q = (fit_q if fit_ok else None), (both_q if both_ok else None)
        _, payloads = unpack(data)
        stats: list = []
        q_def = unpack(default)[0].quality
        assert codec.compress_latents(ys, q_def, stats)[0] == default, "Codec.compress and compress_latents differ"
        rows.append({"default_ideal_bits": [float(b) for b in stats[0]["ideal_bits"]],
                     "default_payload": [len(p) for p in unpack(default)[1]],
                     "file": len(data), "basic": len(extract(data, 1)), "middle": len(extract(data, 2)),
                     "payload": [len(p) for p in payloads], "fit_file": len(fit), "fit_q": fit_q,
                     "both_file": len(both), "both_basic": len(extract(both, 1)), "both_middle": len(extract(both, 2)),
                     "both_q": both_q, "both_payload": [len(p) for p in unpack(both)[1]],
                     "default_file": len(default), "default_basic": len(extract(default, 1)),
                     "default_middle": len(extract(default, 2)), "default_q": unpack(default)[0].quality})
    secs = time.perf_counter() - t0

    def stat(key):
        v = np.array([row[key] for row in rows], np.float64)
        return {"mean_bytes": float(v.mean()), "max_bytes": int(v.max()), "mean_bpp": float(8 * v.mean() / r ** 2)}

    pay = np.array([row["payload"] for row in rows], np.float64)
    both_pay = np.array([row["both_payload"] for row in rows], np.float64)

    def coder_overhead(rows) -> dict:
        """Entropy-coder bytes above the ideal (−log2 p under the coding tables) and container bytes,
        at the default setting: means per layer and per file, payload / ideal over all faces."""
        ideal = np.array([row["default_ideal_bits"] for row in rows], np.float64) / 8
        paid = np.array([row["default_payload"] for row in rows], np.float64)
        files = np.array([row["default_file"] for row in rows], np.float64)
        basic = np.array([row["default_basic"] for row in rows], np.float64)
        over = paid - ideal
        return {"what": "payload bytes - ideal bytes (sum of -log2 p under the coding tables / 8)",
                "ideal_mean_bytes": dict(zip(("basic", "middle", "enhanced"), ideal.mean(0).round(3).tolist())),
                "payload_mean_bytes": dict(zip(("basic", "middle", "enhanced"), paid.mean(0).round(3).tolist())),
                "overhead_mean_bytes": dict(zip(("basic", "middle", "enhanced"), over.mean(0).round(3).tolist())),
                "overhead_per_file_mean_bytes": float(over.sum(1).mean()),
                "overhead_per_file_max_bytes": float(over.sum(1).max()),
                "overhead_per_file_p99_bytes": float(np.percentile(over.sum(1), 99)),
                "share_files_overhead_le_2_bytes": float(np.mean(over.sum(1) <= 2)),
                "payload_over_ideal": float(paid.sum() / ideal.sum()),
                "container_per_file_mean_bytes": float((files - paid.sum(1)).mean()),
                "container_basic_alone_mean_bytes": float((basic - paid[:, 0]).mean())}

    def hist(key):
        qs = [row[key] for row in rows]
        return {("none fits" if q is None else f"q{q}"): qs.count(q) for q in sorted(set(qs), key=lambda q: -1 if q is None else q)}

    res = {"model": args.model, "fingerprint": codec.fingerprint, "resolution": r, "faces": n,
           "images": os.path.abspath(args.images), "split": f"last {args.val_count} files by name",
           "highest_quality": top, "whole_file": stat("file"), "basic_alone": stat("basic"),
           "basic_plus_middle": stat("middle"),
           "payload_mean_bytes": dict(zip(("basic", "middle", "enhanced"), pay.mean(0).round(3).tolist())),
           "share_file_le_0.01bpp": float(np.mean([8 * row["file"] / r ** 2 <= 0.01 for row in rows])),
           "share_basic_le_0.003bpp": float(np.mean([8 * row["basic"] / r ** 2 <= 0.003 for row in rows])),
           f"with_bpp_{args.bpp:g}": {**stat("fit_file"), "qualities": hist("fit_q"),
                                      "share_fitting": float(np.mean([row["fit_q"] is not None for row in rows]))},
           f"with_bpp_{args.bpp:g}_basic_{args.basic_bpp:g}": {
               "whole_file": stat("both_file"), "basic_alone": stat("both_basic"),
               "basic_plus_middle": stat("both_middle"),
               "payload_mean_bytes": dict(zip(("basic", "middle", "enhanced"), both_pay.mean(0).round(3).tolist())),
               "qualities": hist("both_q"),
               "share_fitting_both": float(np.mean([row["both_q"] is not None for row in rows])),
               "mean_quality_of_fitting": float(np.mean([row["both_q"] for row in rows if row["both_q"] is not None]))},
           "default_setting": {
               "what": "Codec.compress(face) without quality or budget (stylecodec compress without rate options)",
               "model_rate_budget": dict(zip(("bpp", "basic_bpp"), codec.default_budget)),
               "whole_file": stat("default_file"), "basic_alone": stat("default_basic"),
               "basic_plus_middle": stat("default_middle"), "qualities": hist("default_q"),
               "share_file_le_0.01bpp": float(np.mean([8 * row["default_file"] / r ** 2 <= 0.01 for row in rows])),
               "share_basic_le_0.003bpp": float(np.mean([8 * row["default_basic"] / r ** 2 <= 0.003 for row in rows])),
               "mean_quality": float(np.mean([row["default_q"] for row in rows])),
               "coder": coder_overhead(rows)},
           "seconds": round(secs, 1), "threads": args.threads}
    print(json.dumps(res, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=2)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
