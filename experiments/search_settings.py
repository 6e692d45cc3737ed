"""Settings of the encoder's search (``stylecodec.latent_search``), face by face against the plain encoder.

    OMP_NUM_THREADS=1 python experiments/search_settings.py --faces 8 --model default \\
        --settings "steps=40" "steps=20" "steps=40,w_mse=5" "steps=40,w_lpips=2"

Faces: the first ``--faces`` held-out UTKFace faces (as ``faces_heldout.py``), each coded at the model's default
budget by the plain encoder and by a searching one per setting (``Codec.set_search``; a setting is a comma list of
:class:`~stylecodec.latent_search.SearchConfig` fields). Prints per setting the mean bytes, the mean of each
metric of the all-layer face (PSNR, LPIPS-Alex, SFace cosine, dlib distance) and its paired difference to the plain
encoder (± standard error), and the search's seconds per face.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from stylecodec.codec import Codec
from stylecodec.data import default_data_root, list_images, split_files
from stylecodec.eval.measure import Measurer, Reference
from stylecodec.images import load_rgb

from paired_faces import METRICS, paired


def parse_setting(text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        k, v = item.split("=")
        out[k.strip()] = int(v) if k.strip() == "steps" else float(v)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, default=8)
    p.add_argument("--model", default="default")
    p.add_argument("--settings", nargs="+", default=["steps=40"])
    a = p.parse_args()
    root = default_data_root()
    names = split_files(list_images(root), "val", 1000)[:a.faces]
    faces = [load_rgb(root / n, 256) for n in names]
    plain = Codec.from_pretrained(a.model)
    measurer = Measurer(("ms_ssim", "lpips_vgg", "facenet", "dlib"))
    refs = [Reference(f) for f in faces]
    base_streams = [plain.compress(f, aligned=True) for f in faces]
    base = [measurer.measure(r, [plain.decompress(s, output="array")])[0][0] for r, s in zip(refs, base_streams)]
    print(f"plain: {np.mean([len(s) for s in base_streams]):.1f} B  "
          + "  ".join(f"{m} {np.mean([b[m] for b in base]):.4f}" for m in METRICS), flush=True)
    for text in a.settings:
        codec = Codec.from_pretrained(a.model).set_search(**parse_setting(text))
        rows, sizes, t0 = [], [], time.process_time()
        for f, r in zip(faces, refs):
            s = codec.compress(f, aligned=True)
            sizes.append(len(s))
            rows.append(measurer.measure(r, [codec.decompress(s, output="array")])[0][0])
        diff = paired(dict(zip(names, rows)), dict(zip(names, base)))
        parts = [f"{m} {np.mean([x[m] for x in rows]):.4f} ({mean:+.4f} ± {se:.4f})" for m, (mean, se, _) in diff.items()]
        sec = (time.process_time() - t0) / len(faces)
        print(f"{text}: {np.mean(sizes):.1f} B  " + "  ".join(parts) + f"  {sec:.1f} CPU-s per face (with measuring)",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
