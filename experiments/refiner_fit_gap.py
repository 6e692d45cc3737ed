"""Does the refiner fit its training faces better than held-out ones? (What would more data buy?)

    OMP_NUM_THREADS=1 python experiments/refiner_fit_gap.py --model runs/refiner_g_150k_model.pt [--faces 200]

Scores a machine-first model with a refiner exactly as ``stylecodec train refiner`` scores it
(quality ``--quality`` of the model, all layers, ŷ rounded around the LSET means, 256² uint8;
PSNR, LPIPS-Alex, facenet cosine to the original's cached embedding), on ``--faces`` training
faces and as many held-out faces, both spread evenly over their sorted file lists (UTKFace is
sorted by age, so the first held-out faces alone are the oldest). The eigenface image (the
refiner's input) is scored too. Latents of both sets are computed the same way (cached teacher
outputs for the basic layer, the pixel PCA for the others), so the only difference is whether
the refiner trained on the face.

A train/held-out gap near zero says the refiner is not limited by the number of faces it has
seen but by what it can represent or how fast it learns; a large gap says more data would help.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    import numpy as np
    import torch

    from stylecodec.analysis.face_teachers import utkface_teachers
    from stylecodec.assets.facenet import load_facenet
    from stylecodec.assets.lpips import load_lpips
    from stylecodec.data import default_data_root, list_images, pixel_array, split_files
    from stylecodec.machine_first import MachineFirstModel
    from stylecodec.train.refiner import _unit, face_latents, score_faces
    from stylecodec.zoo import load

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="machine-first model with a refiner (name or path)")
    p.add_argument("--faces", type=int, default=200, help="faces per split (default 200)")
    p.add_argument("--quality", type=int, default=5, help="quality index (default 5, the trainer's)")
    p.add_argument("--val-count", type=int, default=1000)
    p.add_argument("--chunk", type=int, default=25, help="faces per forward pass")
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    a = p.parse_args()
    torch.manual_seed(0)

    model = load(a.model).model
    if not isinstance(model, MachineFirstModel) or model.refiner is None:
        sys.exit(f"{a.model}: not a machine-first model with a refiner")
    model.eval()
    root = default_data_root()
    t = utkface_teachers(root)
    n_all = len(t["files"])
    n_train = len(split_files(list_images(root), "train", a.val_count))
    assert n_train == n_all - a.val_count, (n_train, n_all)
    lpips, facenet = load_lpips("alex", "cpu"), load_facenet("cpu")
    result = {"model": str(a.model), "quality": a.quality, "faces": a.faces}
    for split, offset, count in (("train", 0, n_train), ("val", n_train, a.val_count)):
        pick = np.unique(np.linspace(0, count - 1, a.faces).round().astype(np.int64))
        pix_small = pixel_array(root, split, model.pixel_resolution, a.val_count)
        pix_full = pixel_array(root, split, model.resolution, a.val_count)
        sums = np.zeros(5)
        for c in range(0, len(pick), a.chunk):
            i = pick[c:c + a.chunk]
            g = offset + i                                       # rows of the teacher cache
            ys = face_latents(model, t, g, np.asarray(pix_small[i]))
            (psnr, lp, cos), (psnr_lin, lp_lin, _) = score_faces(
                model, ys, a.quality, _unit(np.asarray(pix_full[i])), torch.from_numpy(t["facenet"][g, 0]),
                lpips, facenet)
            sums += len(i) * np.array([psnr, lp, cos, psnr_lin, lp_lin])        # chunk means -> sums
            print(f"{split}: {min(c + a.chunk, len(pick))}/{len(pick)}", file=sys.stderr, flush=True)
        m = sums / len(pick)
        result[split] = {"psnr": m[0], "lpips_alex": m[1], "facenet_cos": m[2], "psnr_eigenfaces": m[3],
                         "lpips_eigenfaces": m[4], "n": int(len(pick))}
    print(f"{'split':6} {'PSNR':>7} {'LPIPS':>7} {'facenet':>8} | eigenfaces {'PSNR':>7} {'LPIPS':>7}")
    for split in ("train", "val"):
        r = result[split]
        print(f"{split:6} {r['psnr']:7.2f} {r['lpips_alex']:7.4f} {r['facenet_cos']:8.4f} | "
              f"{'':10} {r['psnr_eigenfaces']:7.2f} {r['lpips_eigenfaces']:7.4f}")
    gap = {k: result["train"][k] - result["val"][k] for k in ("psnr", "lpips_alex", "facenet_cos",
                                                              "psnr_eigenfaces", "lpips_eigenfaces")}
    result["train_minus_val"] = gap
    print("train - val: " + ", ".join(f"{k} {v:+.4f}" for k, v in gap.items()))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
