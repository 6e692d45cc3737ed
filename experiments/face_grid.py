"""The comparison grid of issue 17 on held-out UTKFace faces (columns: :mod:`stylecodec.eval.face_grid`).

    OMP_NUM_THREADS=1 python experiments/face_grid.py --model NAME_OR_PATH --out FILE.png [--faces 8] [--cell 128] [--search-steps N]

Faces: the first ``--faces`` held-out UTKFace faces (files sorted by name, the last ``--val-count``
= 1,000 are held out), in the training view at the model's resolution (centre square, Lanczos;
256² for the default models). Prints a table per face and column and the column means.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from stylecodec.anchors import get_anchor
from stylecodec.anchors.linear import LinearAnchor
from stylecodec.codec import Codec
from stylecodec.data import default_data_root, list_images, split_files
from stylecodec.eval.face_grid import COLUMNS, column_means, face_grid
from stylecodec.files import write_atomic
from stylecodec.images import load_rgb


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="codec model (name or path)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--faces", type=int, default=8, help="held-out faces, from the first (default 8)")
    p.add_argument("--data", default=None, help="UTKFace folder (default: ../shared/data/utkface)")
    p.add_argument("--val-count", type=int, default=1000, help="held-out files at the end of the sorted list")
    p.add_argument("--cell", type=int, default=128, help="pixels per face in the grid (default 128)")
    p.add_argument("--search-steps", type=int, default=0,
                   help="the encoder's search of the pixel latents, steps per face (stylecodec.latent_search; 0: off)")
    a = p.parse_args()

    t0 = time.time()
    root = Path(a.data) if a.data else default_data_root()
    names = split_files(list_images(root), "val", a.val_count)[:a.faces]
    codec = Codec.from_pretrained(a.model, search_steps=a.search_steps)
    faces = [(name, load_rgb(root / name, codec.resolution)) for name in names]
    linear = LinearAnchor(data=root, val_count=a.val_count)
    grid, table = face_grid(codec, faces, get_anchor("vvc"), linear, a.cell, log=lambda s: print(s, flush=True))
    write_atomic(a.out, lambda tmp: grid.save(tmp, format="PNG", optimize=True), make_parents=True)

    print(f"\n{'face':<36} {'column':<15} {'bytes':>5} {'PSNR':>6} {'LPIPS-A':>7} {'SFace':>6}  note")
    for t in table:
        print(f"{t['face']:<36} {t['column']:<15} {t['bytes']:>5} {t['psnr']:6.2f} {t['lpips_alex']:7.3f} "
              f"{t['id_sface']:6.3f}  {t['note']}")
    print(f"\nmeans over {len(faces)} faces:")
    for m in column_means(table):
        print(f"  {m['column']:<15} {m['bytes']:6.1f} B  PSNR {m['psnr']:5.2f}  LPIPS-Alex {m['lpips_alex']:.3f}  "
              f"SFace {m['id_sface']:.3f}")
    print(f"\n{a.out}: {len(faces)} faces x {len(COLUMNS)} columns (model {a.model}, {codec.resolution}², "
          f"{time.time() - t0:.0f} s); * = no linear point within the stylecodec bytes / identity not reached by VVC")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
