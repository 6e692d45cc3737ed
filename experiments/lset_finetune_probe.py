"""Probe: does more LSET training lower the coded bytes of a machine-first model on the held-out faces?

    OMP_NUM_THREADS=1 python experiments/lset_finetune_probe.py --model default-linear --steps 750

Latents of the training faces (+ mirrors) and of the 1,000 held-out faces are computed from the teacher
cache (``stylecodec.train.machine_first.training_latents``); the model's LSET is fine-tuned (AdamW, cosine
from --lr, noise quantisation as in ``stylecodec train machine-first``, batch 256, qualities drawn with
--quality-probs: by default how often ``default`` picks each quality on held-out faces) and every
--eval-every steps the held-out bytes per layer at qualities 5-7 are printed: the coder's exact emulation
(``quant="ste"``), ideal bits (−log2 p), no container. The model file is not changed.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default-linear")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--quality-probs", default="0.026,0.031,0.027,0.029,0.051,0.175,0.370,0.291")
    a = p.parse_args()

    import numpy as np
    import torch

    from stylecodec.analysis.face_teachers import utkface_teachers
    from stylecodec.data import default_data_root, list_images, pixel_array, split_files
    from stylecodec.train.machine_first import training_latents
    from stylecodec.zoo import load

    torch.manual_seed(0)
    model = load(a.model).model
    root = default_data_root()
    n_train = len(split_files(list_images(root), "train", 1000))
    teachers = utkface_teachers(root)
    tr = [torch.from_numpy(y) for y in training_latents(model, teachers, np.arange(n_train),
                                                          pixel_array(root, "train", model.pixel_resolution, 1000))]
    va = training_latents(model, teachers, n_train + np.arange(1000), pixel_array(root, "val", model.pixel_resolution, 1000))
    va = [torch.from_numpy(y[:1000]) for y in va]                     # the faces, not their mirrors
    probs = torch.tensor([float(v) for v in a.quality_probs.split(",")])

    @torch.no_grad()
    def held_out() -> dict[int, list[float]]:
        model.eval()
        out = {q: (model.bits(model(va, q, quant="ste")) / 8).mean(0).tolist() for q in (5, 6, 7)}
        model.train()
        return out

    base = held_out()
    show = lambda r: "  ".join(f"q{q}: {' + '.join(f'{v:.2f}' for v in b)} = {sum(b):.2f} B" for q, b in r.items())  # noqa: E731
    print("step 0:", show(base), flush=True)
    model.gain.requires_grad_(False)
    model.inv_gain.requires_grad_(False)
    opt = torch.optim.AdamW(model.lset.parameters(), a.lr, weight_decay=1e-4)
    model.train()
    t0 = time.process_time()
    for step in range(1, a.steps + 1):
        idx = torch.randint(0, len(tr[0]), (256,))
        q = torch.multinomial(probs, 256, replacement=True)
        loss = model.bits(model([y[idx] for y in tr], q, quant="noise")).sum(1).mean() / 8
        for g in opt.param_groups:
            g["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * step / a.steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.lset.parameters(), 5.0)
        opt.step()
        if step % a.eval_every == 0 or step == a.steps:
            r = held_out()
            gain = "  ".join(f"q{q}: {sum(b) - sum(base[q]):+.3f} B" for q, b in r.items())
            print(f"step {step} ({time.process_time() - t0:.0f} CPU-s):", show(r), "| vs step 0:", gain, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
