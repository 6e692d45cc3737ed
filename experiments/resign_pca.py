"""Repair a machine-first model whose eigenface signs differ from the latents its LSET was trained on.

    OMP_NUM_THREADS=1 python experiments/resign_pca.py --model pretrained/default.pt \\
        --latents runs/mf1/latents.npz --out runs/mf3_model.pt

Why: the randomised SVD of the eigenface fit returns arbitrary signs. The shipped default (0x57e7) has
mf1's LSET, trained on ``runs/mf1/latents.npz`` -- latents computed with an earlier fit (mf0) whose
components 85 of 192 have the opposite sign. Its encoder therefore hands the LSET middle/enhanced latents
with flipped signs for those components, and the LSET's context-predicted means point the wrong way
(emulated coding of the 1,000 held-out faces: middle layer 26.4 B instead of 20.8 B at quality 7).

What: for every eigenface component, the sign of the correlation between the model's own latents and the
cached ones over the first ``--rows`` training faces (and mirrors); components with sign -1 get their basis
row negated (an exact reparametrisation: the eigenface image of any latents is unchanged, only which latents
the encoder writes). The identity and shape fits are exact SVDs and must already agree. The result passes
:func:`stylecodec.train.machine_first.check_latents` against the cached latents, else the script fails.
Writes the model (fp16 storage as shipped) and prints the flipped count and the emulated bytes per quality
before and after on the 1,000 held-out faces.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from stylecodec.analysis.face_teachers import flip_identity, utkface_teachers
from stylecodec.data import default_data_root, list_images, pixel_array, split_files
from stylecodec.errors import StylecodecError
from stylecodec.train.machine_first import check_latents, training_latents
from stylecodec.zoo import load, save_model


@torch.no_grad()
def heldout_bytes(model, teachers, root, val_count: int = 1000) -> np.ndarray:
    """Emulated bytes per layer [Q, 3] (mean over the held-out faces, all qualities)."""
    n = len(teachers["files"])
    val = slice(n - val_count, n)
    x = torch.from_numpy(np.asarray(pixel_array(root, "val", model.pixel_resolution, val_count)).copy())
    x = x.permute(0, 3, 1, 2).float() / 127.5 - 1
    y0 = model.basic_latent(torch.from_numpy(flip_identity(teachers)[val]), torch.from_numpy(teachers["landmarks"][val]))
    ys = [y0] + model.pixel_latents(x)
    return np.stack([(model.bits(model(ys, torch.full((val_count,), q), quant="ste")).mean(0) / 8).numpy()
                     for q in range(model.num_qualities)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--latents", required=True, help="latents.npz the model's LSET was trained on")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=64)
    args = ap.parse_args()
    loaded = load(args.model)
    model = loaded.model
    root = default_data_root()
    teachers = utkface_teachers(root)
    faces = pixel_array(root, "train", model.pixel_resolution, 1000)
    assert len(split_files(list_images(root), "train", 1000)) == len(faces)
    with np.load(args.latents) as z:
        ys = [z[f"y{l}"] for l in range(3)]
    fresh = training_latents(model, teachers, np.arange(args.rows), np.asarray(faces[:args.rows]))
    n = len(ys[0]) // 2
    cached = [np.concatenate([y[:args.rows], y[n:n + args.rows]]) for y in ys]
    if not np.allclose(np.abs(cached[0]), np.abs(fresh[0]), atol=2e-3):
        raise StylecodecError("the basic-layer latents differ beyond sign: these latents are another model's")
    pix_cached, pix_fresh = np.concatenate(cached[1:], 1), np.concatenate(fresh[1:], 1)
    sign = np.sign((pix_cached * pix_fresh).sum(0))
    before = heldout_bytes(model, teachers, root)
    with torch.no_grad():
        model.pix_basis.mul_(torch.from_numpy(sign).to(model.pix_basis.dtype)[:, None])
    check_latents(model, ys, teachers, faces, args.latents, rows=args.rows)
    after = heldout_bytes(model, teachers, root)
    print(f"flipped {int((sign < 0).sum())} of {len(sign)} eigenface components")
    print("quality | bytes basic / middle / enhanced before | after")
    for q, (b, a) in enumerate(zip(before, after)):
        print(f"q{q} | {b[0]:.2f} / {b[1]:.2f} / {b[2]:.2f} | {a[0]:.2f} / {a[1]:.2f} / {a[2]:.2f}")
    meta = {**loaded.meta, "resigned_from": args.model, "resign_latents": args.latents}
    fp = save_model(model, args.out, meta, storage="fp16")
    print(f"wrote {args.out} (fingerprint 0x{fp:04x})")


if __name__ == "__main__":
    main()
