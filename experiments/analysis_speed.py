"""Analysis time per image: heads on the basic layer vs decode-then-detect on pixels.

    python experiments/analysis_speed.py [--model PATH] [--images 20] [--threads 2] [--device cpu]
                                         [--out experiments/results/analysis_speed.json]

For each image (UTKFace held-out faces when ../shared is present, else noise) one stream is
made at the model's highest quality; then, timed per image (median over images):

- ``basic``:  ``Codec.analyze`` (header + basic layer -> entropy decoding -> heads; no pixels);
- ``pixels``: ``Codec.decompress`` of all layers, then dlib 68 landmarks on the decoded face
  (and, reported separately, the facenet embedding of it: the pixel route's identity).

Default model: a tiny RANDOM 64² codec with random heads, built in a temporary folder (timing
of the mechanics only). A model without trained heads gets random ones of the default size.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _tiny_model(folder: Path) -> Path:
    from stylecodec.analysis.heads import AnalysisHeads
    from stylecodec.model import StyleCodecModel, tiny_config
    from stylecodec.zoo import save_heads_into, save_model

    torch.manual_seed(0)
    path = folder / "tiny.pt"
    save_model(StyleCodecModel(tiny_config()), path, {"note": "random weights, timing only"})
    save_heads_into(path, AnalysisHeads(8), path, {"note": "random"})
    return path


def _images(n: int, resolution: int) -> tuple[list[np.ndarray], str]:
    from stylecodec.data import default_data_root, list_images, load_rgb, split_files

    root = default_data_root()
    if root.is_dir():
        names = split_files(list_images(root), "val")[:n]
        return [load_rgb(root / f, resolution) for f in names], f"{root} (held-out split)"
    rng = np.random.RandomState(0)
    return [(rng.rand(resolution, resolution, 3) * 255).astype(np.uint8) for _ in range(n)], "noise"


def _timed(fn) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: a tiny random model)")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("experiments/results/analysis_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from stylecodec.analysis.heads import AnalysisHeads, HeadsError
    from stylecodec.assets.facenet import load_facenet, preprocess
    from stylecodec.assets.landmarks import dlib_landmarks68
    from stylecodec.codec import Codec

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or _tiny_model(Path(tmp))
        codec = Codec.from_pretrained(model, device=args.device)
        heads_note = "trained"
        try:
            codec.analysis_heads()
        except HeadsError:
            codec.heads, heads_note = AnalysisHeads(codec.model.latent_dims[0]), "random (model has none)"
        images, source = _images(args.images, codec.resolution)
        facenet = load_facenet(args.device)
        streams = [codec.compress(img) for img in images]
        codec.analyze(streams[0])                                   # warm-up
        dlib_landmarks68(codec.decompress(streams[0], output="array"))
        t = {"basic_analyze": [], "decode": [], "dlib": [], "facenet": []}
        for s in streams:
            t["basic_analyze"].append(_timed(lambda: codec.analyze(s))[1])
            decoded, dt = _timed(lambda: codec.decompress(s, output="array"))
            t["decode"].append(dt)
            t["dlib"].append(_timed(lambda: dlib_landmarks68(decoded))[1])
            with torch.no_grad():
                t["facenet"].append(_timed(lambda: facenet(preprocess(decoded).to(args.device)))[1])
    med = {k: statistics.median(v) * 1000 for k, v in t.items()}
    med["pixels_landmarks"] = med["decode"] + med["dlib"]
    med["pixels_landmarks_identity"] = med["pixels_landmarks"] + med["facenet"]
    result = {"model": str(args.model or "tiny random"), "heads": heads_note, "resolution": codec.resolution,
              "images": len(images), "source": source, "threads": args.threads, "device": args.device,
              "cpu": platform.processor() or platform.machine(), "median_ms": med,
              "speedup_landmarks": med["pixels_landmarks"] / med["basic_analyze"],
              "speedup_landmarks_identity": med["pixels_landmarks_identity"] / med["basic_analyze"]}
    print(f"{len(images)} images at {codec.resolution}² ({source}), {args.threads} threads, {args.device}:")
    print(f"  basic layer -> heads (landmarks + identity): {med['basic_analyze']:8.1f} ms")
    print(f"  decode all layers -> dlib 68:                {med['pixels_landmarks']:8.1f} ms "
          f"(decode {med['decode']:.1f} + dlib {med['dlib']:.1f}); + facenet {med['facenet']:.1f} ms")
    print(f"  speed-up: x{result['speedup_landmarks']:.1f} (landmarks), x{result['speedup_landmarks_identity']:.1f} "
          f"(landmarks + identity)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
