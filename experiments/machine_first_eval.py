"""Fast evaluation of a machine-first model on cached teacher outputs, through the real coder.

The encoder side's frozen networks (SFace, dlib) are read from the teacher caches
(``stylecodec.analysis.face_teachers``, ``stylecodec.eval.lfw_features``) instead of being run
again; the streams are the codec's own (``Codec.compress_latents``: entropy coding, container),
and the quality per face is chosen as ``Codec.compress`` chooses it (the model's budget). So the
figures equal the end-to-end commands' (``stylecodec verify-lfw --judge head``, ``stylecodec eval``)
up to the face networks' run-to-run equality, which the test suite checks separately.

Reports, per quality and at the default setting:
- LFW (6,000 pairs, both images coded, basic layer only): 10-fold accuracy of the identity head;
  bytes of the basic layer as extracted (per quality: the basic layer coded alone, byte-identical to
  ``extract``; at the default setting also the whole file, coded where the search needs it);
- held-out UTKFace (last 1,000 by name): landmark NME of the head vs dlib on the original (faces
  dlib found), PSNR of the decoded face (all layers) at 256².

    python experiments/machine_first_eval.py --model runs/mf/model.pt [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from stylecodec.analysis.face_teachers import flip_identity, utkface_teachers
from stylecodec.codec import Codec
from stylecodec.data import default_data_root, pixel_array
from stylecodec.eval.lfw_features import lfw_names, lfw_teachers
from stylecodec.metrics.nme import nme_per_image as nme
from stylecodec.metrics.verification import kfold_accuracy
from stylecodec.bitstream import extract
from stylecodec.rate import stream_sizes


def lfw_aligned(names: list[str], root) -> np.ndarray:
    from PIL import Image

    from stylecodec.eval.align_cache import AlignmentCache
    from stylecodec.paths import cache_root
    cache = AlignmentCache(cache_root() / "align", 256)
    return np.stack([cache.aligned(np.asarray(Image.open(root / n).convert("RGB")))[0] for n in names])


def latents_for(codec: Codec, identity: np.ndarray, landmarks: np.ndarray, faces: np.ndarray) -> list[torch.Tensor]:
    """The encoder's latents [N, d_l] of every layer, from cached teacher outputs and the faces."""
    m = codec.model
    with torch.no_grad():
        y0 = m.basic_latent(torch.from_numpy(identity), torch.from_numpy(landmarks))
        x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float() / 127.5 - 1
        pix = m.pixel_latents(m.small(x))
    return [y.double() for y in [y0] + pix]


def streams_for(codec: Codec, ys: list[torch.Tensor]) -> list[list[bytes]]:
    """Every face's whole stream at every quality: [face][quality]."""
    return [list(s) for s in zip(*[codec.compress_latents(ys, q) for q in codec.quality_range])]


def default_streams(codec: Codec, ys: list[torch.Tensor], basic: list[list[bytes]]) -> tuple[list[bytes], list[int]]:
    """Each face's stream at the default setting, as ``Codec.compress`` chooses it (the highest quality
    whose basic layer and whole file fit the model's budget, else the lowest), searched from the top
    quality down, coding whole streams only where the basic layer (``basic[face][q]``) fits."""
    bpp, basic_bpp = codec.default_budget
    px = codec.resolution ** 2
    n = len(basic)
    out: list[bytes | None] = [None] * n
    choice = [0] * n
    todo = np.arange(n)
    for q in reversed(codec.quality_range):
        if q == codec.quality_range[0]:
            cand = todo
        else:
            cand = np.array([i for i in todo if 8 * len(basic[i][q]) <= basic_bpp * px], dtype=int)
        if len(cand) == 0:
            continue
        data = codec.compress_latents([y[torch.from_numpy(cand)] for y in ys], q)
        done = set()
        for i, d in zip(cand, data):
            if q == codec.quality_range[0] or 8 * len(d) <= bpp * px:
                out[i], choice[i] = d, q
                done.add(int(i))
        todo = np.array([i for i in todo if int(i) not in done], dtype=int)
        if len(todo) == 0:
            break
    return out, choice


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--out", default=None)
    p.add_argument("--lfw-limit", type=int, default=None, help="first N LFW images (pairs among them)")
    a = p.parse_args()
    torch.set_num_threads(1)
    codec = Codec.from_pretrained(a.model)
    res: dict = {"model": a.model}
    t0 = time.time()
    # ---- LFW
    root, names, rows = lfw_names()
    t = lfw_teachers()
    n = len(names) if a.lfw_limit is None else a.lfw_limit
    keep = set(names[:n])
    rows = [r for r in rows if r["image_a"] in keep and r["image_b"] in keep]
    faces = lfw_aligned(names[:n], root)
    ys = latents_for(codec, flip_identity(t)[:n], t["landmarks"][:n], faces)
    basic = [list(b) for b in zip(*[codec.compress_latents(ys, q, n_layers=1) for q in codec.quality_range])]
    default, choice = default_streams(codec, ys, basic)
    idx = {nm: i for i, nm in enumerate(names[:n])}
    a_i = np.array([idx[r["image_a"]] for r in rows])
    b_i = np.array([idx[r["image_b"]] for r in rows])
    same = np.array([r["same_person"] == "1" for r in rows])
    folds = np.array([int(r["fold"]) for r in rows])
    heads = codec.analysis_heads()

    def head_out(data: list[bytes], key: str) -> np.ndarray:
        """The heads' output from the basic layers (batched decoding, as stylecodec index does)."""
        out = []
        with torch.no_grad():
            for i in range(0, len(data), 512):
                y_hat, ok, errors = codec.decode_basic_batch(data[i:i + 512])
                assert len(ok) == len(data[i:i + 512]), errors
                out.append(heads(heads.features(y_hat))[key].numpy())
        return np.concatenate(out)

    def head_identity(data: list[bytes]) -> np.ndarray:
        return head_out(data, "identity")

    def acc(emb):
        sim = (emb[a_i] * emb[b_i]).sum(1)
        f = kfold_accuracy(sim, same, folds)[0]
        return 100 * f.mean(), 100 * f.std()

    teacher = flip_identity(t)[:n]
    res["lfw_pairs"] = len(rows)
    res["lfw_teacher_flip_avg"] = acc(teacher)
    single = t["sface"][:n, 0]
    res["lfw_teacher_single"] = acc(single)
    res["lfw"] = {}
    for q in list(codec.quality_range) + ["default"]:
        data = default if q == "default" else [b[q] for b in basic]
        m_, s_ = acc(head_identity(data))
        basic_b = np.array([len(extract(d, 1)) for d in data])
        row = {"acc": m_, "std": s_, "basic_bytes": basic_b.mean(), "basic_max": int(basic_b.max())}
        line = f"LFW q={q}: {m_:.2f} ± {s_:.2f} %  basic {basic_b.mean():.1f} B (max {basic_b.max()})"
        if q == "default":                              # per quality only the basic layers were coded
            file_b = np.array([len(d) for d in data])
            row.update(file_bytes=file_b.mean(), file_max=int(file_b.max()))
            line += f"  file {file_b.mean():.1f} B (max {file_b.max()})"
        res["lfw"][str(q)] = row
        print(line, flush=True)
    res["lfw_default_quality_hist"] = np.bincount(choice, minlength=codec.model.num_qualities).tolist()
    # ---- held-out UTKFace
    u = utkface_teachers()
    val = slice(len(u["files"]) - 1000, len(u["files"]))
    faces = pixel_array(default_data_root(), "val", 256)
    ys = latents_for(codec, flip_identity(u)[val], u["landmarks"][val], faces)
    streams = streams_for(codec, ys)
    basic = [[extract(d, 1) for d in s] for s in streams]
    _, choice = default_streams(codec, ys, basic)
    found = u["found"][val]
    ref = u["landmarks"][val] * 256 - 0.5
    res["utk"] = {}
    for q in list(codec.quality_range) + ["default"]:
        data = [s[c if q == "default" else q] for s, c in zip(streams, choice)]
        sizes = np.array([stream_sizes(d) for d in data])
        lm = head_out(data, "landmarks") * codec.resolution - 0.5          # pixels of the R x R face
        e = nme(lm[found], ref[found])
        dec = np.stack([codec.decompress(d, output="array") for d in data[:200]]).astype(np.float64)
        mse = ((dec - faces[:200]) ** 2).mean((1, 2, 3))
        psnr = float((10 * np.log10(255 ** 2 / mse)).mean())
        res["utk"][str(q)] = {"nme_head": float(e.mean()), "psnr_all_200": psnr, "file_bytes": sizes[:, 0].mean(),
                              "basic_bytes": sizes[:, 1].mean(), "basic_max": int(sizes[:, 1].max()),
                              "file_max": int(sizes[:, 0].max())}
        print(f"UTK q={q}: NME head {e.mean():.4f}  PSNR(all layers, 200) {psnr:.2f}  basic {sizes[:, 1].mean():.1f} B "
              f"(max {sizes[:, 1].max()})  file {sizes[:, 0].mean():.1f} B (max {sizes[:, 0].max()})", flush=True)
    res["utk_default_quality_hist"] = np.bincount(choice, minlength=codec.model.num_qualities).tolist()
    res["seconds"] = time.time() - t0
    print(json.dumps({k: v for k, v in res.items() if k in ("lfw_teacher_flip_avg", "lfw_teacher_single",
                                                            "lfw_default_quality_hist", "utk_default_quality_hist")}))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1, default=float)


if __name__ == "__main__":
    main()
