"""Choose a machine-first model's quality table on emulated coding (no range coder, minutes not hours).

The LSET predicts (μ, σ) in latent units whatever the quality (the gains only scale the coding
domain), so a trained model takes another quality table without retraining. For each candidate
table this script sets the gains (:func:`stylecodec.machine_first.quality_gains`), runs the coder's
emulation (``quant="ste"``: rounded around the snapped mean, group by group, as the range coder
does) on every LFW image (cached teacher outputs + aligned pixels) and the 1,000 held-out UTKFace
faces, estimates each stream's bytes from its ideal bits (+ the range coder's measured 0.33 B per
layer and the container: 4 B for the basic layer alone, 8 B for three layers), picks each face's
quality as the default setting does (highest quality with file <= 81 B and basic layer <= 24 B;
on LFW only the basic layers are emulated unless ``--lfw-pixels``, so without it the file limit is not
applied there: the UTKFace figures show whether it binds; with it, LFW's aligned faces are read from the
alignment cache that ``machine_first_eval.py`` fills and every layer is emulated),
and reports LFW accuracy (identity head, both images coded) per quality and at the default, NME
of the landmark head on UTKFace, the PSNR of the eigenface image (all layers, no refiner, 256² as
users get it) on UTKFace, and the bytes. The chosen table is then checked with the real
coder (``experiments/machine_first_eval.py``).

Selection caveat: the table is chosen by looking at LFW accuracy (the same pairs the acceptance
figure uses); the identity PCA is fitted on UTKFace only, and the table has 8 x 5 numbers.

    python experiments/tune_quality_table.py --model runs/mf1/model.pt [--tables T1,T2] [--write-model OUT]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from stylecodec.analysis.face_teachers import flip_identity, utkface_teachers
from stylecodec.data import default_data_root, pixel_array
from stylecodec.eval.lfw_features import lfw_names, lfw_teachers
from stylecodec.machine_first import quality_gains
from stylecodec.metrics.nme import nme_per_image as nme
from stylecodec.metrics.verification import kfold_accuracy
from stylecodec.paths import cache_root
from stylecodec.train.machine_first import QUALITY_TABLE
from stylecodec.zoo import load, save_model

CODER_OVERHEAD_B = 0.33          # range coder bytes above -log2 p per layer (bitstream v2, measured)
CONTAINER_B = {1: 4, 3: 8}       # header + CRCs + lengths, basic alone / three layers

# Candidate tables: identity [k, step], shape [k, step], eigenfaces [k_middle, k_enhanced, step].
TABLES: dict[str, list[dict]] = {
    "mf1": [                                       # the first model's table (runs/mf1)
        {"id": [24, 0.14], "shape": [4, 0.06], "pix": [32, 0, 6.0]},
        {"id": [32, 0.13], "shape": [6, 0.05], "pix": [48, 16, 5.0]},
        {"id": [48, 0.15], "shape": [8, 0.045], "pix": [64, 32, 4.5]},
        {"id": [56, 0.15], "shape": [10, 0.04], "pix": [64, 64, 4.0]},
        {"id": [64, 0.14], "shape": [10, 0.035], "pix": [64, 96, 3.5]},
        {"id": [80, 0.15], "shape": [12, 0.035], "pix": [64, 128, 3.2]},
        {"id": [80, 0.13], "shape": [14, 0.03], "pix": [64, 128, 3.0]},
        {"id": [96, 0.14], "shape": [16, 0.03], "pix": [64, 128, 2.8]},
    ],
    "mf2": [                                       # shipped in 0x57e7 and 0x92e2 (until 2026-12-07)
        {"id": [32, 0.13], "shape": [0, 1.0], "pix": [32, 0, 6.0]},
        {"id": [40, 0.12], "shape": [8, 0.06], "pix": [48, 16, 5.0]},
        {"id": [48, 0.12], "shape": [12, 0.05], "pix": [64, 32, 4.5]},
        {"id": [48, 0.1], "shape": [12, 0.05], "pix": [64, 64, 4.0]},
        {"id": [56, 0.12], "shape": [12, 0.05], "pix": [64, 96, 3.6]},
        {"id": [56, 0.11], "shape": [12, 0.05], "pix": [64, 96, 3.6]},
        {"id": [64, 0.12], "shape": [12, 0.05], "pix": [64, 96, 3.6]},
        {"id": [64, 0.11], "shape": [12, 0.045], "pix": [64, 96, 3.6]},
    ],
}
# with consistent eigenface signs (experiments/resign_pca.py) the pixel layers cost ~6 B less: candidates
# that spend it on eigenfaces at the top qualities (identity and shape as mf2)
_PIX_TOP = {"mf3a": ([64, 128, 3.4], [64, 128, 3.2], [64, 128, 3.0]),
            "mf3b": ([64, 128, 3.2], [64, 128, 2.9], [64, 128, 2.6]),
            "mf3c": ([64, 112, 3.4], [64, 128, 3.0], [64, 128, 2.4]),
            "mf3d": ([64, 96, 3.6], [64, 128, 3.2], [64, 128, 3.0]),
            "mf3e": ([64, 128, 3.4], [64, 128, 3.4], [64, 128, 3.0])}
for _name, _pix in _PIX_TOP.items():
    TABLES[_name] = TABLES["mf2"][:5] + [dict(row, pix=p) for row, p in zip(TABLES["mf2"][5:], _pix)]
assert TABLES["mf3c"] == QUALITY_TABLE, "the shipped table (0xe9ac, 2026-12-07) is mf3c"


@torch.no_grad()
def emulate(model, ys: list[torch.Tensor], q: int, chunk: int = 2048, target=None):
    """(estimated bytes [N, 2]: basic alone, whole file (NaN when only the basic layer is given);
    identity [N, 128]; landmarks [N, 68, 2]; PSNR [N] of the eigenface image vs ``target`` uint8
    [N, R, R, 3] (NaN without)). ``ys``: the basic layer alone, or every layer."""
    b, ids, lms, psnrs = [], [], [], []
    for s in range(0, len(ys[0]), chunk):
        g, _ = model.gains(q, len(ys[0][s:s + chunk]))
        out = model.coder([y[s:s + chunk] for y in ys], g, "ste")
        bits = torch.stack([-torch.log2(p).sum(1) for p in out["likelihoods"]], 1).double().numpy() / 8
        bits = bits + CODER_OVERHEAD_B
        whole = CONTAINER_B[3] + bits.sum(1) if len(ys) == 3 else np.full(len(bits), np.nan)
        b.append(np.stack([CONTAINER_B[1] + bits[:, 0], whole], 1))
        y_basic = out["y_hat"][0] / g[:, model.layer_slice(0)]
        h = model.heads(y_basic)
        ids.append(h["identity"].numpy())
        lms.append(h["landmarks"].numpy())
        if target is not None and len(ys) == 3:
            gi = 1 / g
            img = model.linear_image(*(out["y_hat"][l] * gi[:, model.layer_slice(l)] for l in (1, 2)))
            r = target.shape[1]
            img = torch.nn.functional.interpolate(img, size=(r, r), mode="bicubic", align_corners=False)
            u8 = ((img.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).double()
            mse = ((u8 - torch.from_numpy(np.asarray(target[s:s + chunk])).double()) ** 2).mean((1, 2, 3))
            psnrs.append((10 * torch.log10(255 ** 2 / mse)).numpy())
        else:
            psnrs.append(np.full(len(bits), np.nan))
    return np.concatenate(b), np.concatenate(ids), np.concatenate(lms), np.concatenate(psnrs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--tables", default=",".join(TABLES))
    p.add_argument("--file-bytes", type=float, default=81)
    p.add_argument("--basic-bytes", type=float, default=24)
    p.add_argument("--basic-only", action="store_true", help="UTKFace too: basic layers only (no file sizes)")
    p.add_argument("--lfw-pixels", action="store_true", help="LFW: every layer, so the file limit applies too (about 10 CPU-min per table)")
    p.add_argument("--write-model", default=None, help="save the model with the (single) table given")
    p.add_argument("--out", default=None, help="JSON of every table's figures")
    a = p.parse_args()
    torch.set_num_threads(1)
    loaded = load(a.model)
    model = loaded.model.eval()
    root, names, rows = lfw_names()
    t = lfw_teachers()
    ident = torch.from_numpy(flip_identity(t))
    y0 = model.basic_latent(ident, torch.from_numpy(t["landmarks"]))
    lfw_ys = [y0.float()]                      # the basic layer alone: identity and its bytes
    if a.lfw_pixels:
        from machine_first_eval import lfw_aligned      # experiments/: the same aligned faces it codes

        with torch.no_grad():
            chunks = []
            for s in range(0, len(names), 1024):
                x = torch.from_numpy(lfw_aligned(names[s:s + 1024], root)).permute(0, 3, 1, 2).float() / 127.5 - 1
                chunks.append(model.pixel_latents(model.small(x)))
        lfw_ys += [torch.cat(layer) for layer in zip(*chunks)]
    idx = {nm: i for i, nm in enumerate(names)}
    a_i = np.array([idx[r["image_a"]] for r in rows])
    b_i = np.array([idx[r["image_b"]] for r in rows])
    same = np.array([r["same_person"] == "1" for r in rows])
    folds = np.array([int(r["fold"]) for r in rows])
    u = utkface_teachers()
    val = slice(len(u["files"]) - 1000, len(u["files"]))
    faces = pixel_array(default_data_root(), "val", 256)
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float() / 127.5 - 1
        utk_ys = [model.basic_latent(torch.from_numpy(flip_identity(u)[val]),
                                     torch.from_numpy(u["landmarks"][val])).float()]
        if not a.basic_only:
            utk_ys += model.pixel_latents(model.small(x))
    found = u["found"][val]
    ref = u["landmarks"][val]
    report = {}
    for name in a.tables.split(","):
        table = TABLES[name]
        g = quality_gains(model, table)
        with torch.no_grad():
            model.gain.copy_(g)
            model.inv_gain.copy_(1.0 / g)
        t0 = time.time()
        per_q = [emulate(model, lfw_ys, q) for q in range(model.num_qualities)]
        per_q_utk = [emulate(model, utk_ys, q, chunk=250, target=faces) for q in range(model.num_qualities)]
        res = {"table": table, "quality": {}}
        for tag, pq in (("lfw", per_q), ("utk", per_q_utk)):
            sizes = np.stack([s for s, _, _, _ in pq], 1)                    # [N, Q, 2]
            fits = sizes[..., 0] <= a.basic_bytes
            if len(utk_ys if tag == "utk" else lfw_ys) == 3:                # else basic layers only
                fits &= sizes[..., 1] <= a.file_bytes
            choice = np.where(fits.any(1), model.num_qualities - 1 - np.argmax(fits[:, ::-1], 1), 0)
            res[f"{tag}_choice_hist"] = np.bincount(choice, minlength=model.num_qualities).tolist()
            for q in list(range(model.num_qualities)) + ["default"]:
                sel = choice if q == "default" else np.full(len(choice), q)
                s = sizes[np.arange(len(sel)), sel]
                ids = np.stack([pq[c][1][i] for i, c in enumerate(sel)])
                lm = np.stack([pq[c][2][i] for i, c in enumerate(sel)])
                row = res["quality"].setdefault(str(q), {})
                row[f"{tag}_basic_B"] = float(s[:, 0].mean())
                row[f"{tag}_basic_max"] = float(s[:, 0].max())
                row[f"{tag}_file_B"] = float(s[:, 1].mean())
                if tag == "lfw":
                    f = kfold_accuracy((ids[a_i] * ids[b_i]).sum(1), same, folds)[0]
                    row["lfw_acc"] = 100 * float(f.mean())
                else:
                    row["nme"] = float(nme(lm[found], ref[found]).mean())
                    row["psnr_linear"] = float(np.mean([pq[c][3][i] for i, c in enumerate(sel)]))
        report[name] = res
        print(f"== {name} ({time.time() - t0:.0f} s); default choice LFW {res['lfw_choice_hist']} UTK {res['utk_choice_hist']}")
        for q, r in res["quality"].items():
            print(f"  q={q:>7}: LFW {r['lfw_acc']:.2f} %  basic {r['lfw_basic_B']:.1f} B (max {r['lfw_basic_max']:.0f})  "
                  f"file {r['lfw_file_B']:.1f} B | UTK NME {r['nme']:.4f} basic {r['utk_basic_B']:.1f} "
                  f"file {r['utk_file_B']:.1f} PSNR {r['psnr_linear']:.2f} dB", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=1))
    if a.write_model:
        meta = dict(loaded.meta, quality_table=TABLES[a.tables.split(",")[-1]],
                    quality_table_from=f"experiments/tune_quality_table.py --model {a.model} --tables {a.tables}")
        fp = save_model(model, a.write_model, meta, storage="fp16")
        print(f"model written to {a.write_model} (fingerprint 0x{fp:04x})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
