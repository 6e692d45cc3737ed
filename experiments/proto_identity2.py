"""Prototype (issue 16): PCA-initialised learned identity code vs plain PCA, both LFW images coded.

    python experiments/proto_identity2.py [--flip-avg] [--steps 3000]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from proto_identity import hist_bits, lfw_pairs, load_cache, verify


class IdCode(nn.Module):
    """e [N,128] -> y = (PCA coords)/step + MLP residual -> EntropyBottleneck -> ŷ -> step*V^T ŷ + mu + MLP residual."""

    def __init__(self, mu, vt, step, k=128, hidden=512, residual=True):
        super().__init__()
        from compressai.entropy_models import EntropyBottleneck
        V = torch.from_numpy(vt[:k]).float()
        self.a = nn.Linear(128, k)
        self.s = nn.Linear(k, 128)
        with torch.no_grad():
            self.a.weight.copy_(V / step); self.a.bias.copy_(-(V @ torch.from_numpy(mu).float()) / step)
            self.s.weight.copy_(V.T * step); self.s.bias.copy_(torch.from_numpy(mu).float())
        self.residual = residual
        self.ra = nn.Sequential(nn.Linear(128, hidden), nn.GELU(), nn.Linear(hidden, k))
        self.rs = nn.Sequential(nn.Linear(k, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 128))
        for m in (self.ra[-1], self.rs[-1]):
            nn.init.zeros_(m.weight); nn.init.zeros_(m.bias)
        self.eb = EntropyBottleneck(k)

    def analysis(self, e):
        return self.a(e) + (self.ra(e) if self.residual else 0)

    def synthesis(self, y):
        return self.s(y) + (self.rs(y) if self.residual else 0)

    def forward(self, e, training=True):
        y = self.analysis(e)
        y_hat, lik = self.eb(y[:, :, None], training=training)
        return self.synthesis(y_hat[:, :, 0]), lik


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--flip-avg", action="store_true")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--points", default="0.13:30,0.17:20,0.22:12")
    p.add_argument("--no-residual", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1); torch.manual_seed(0)
    utk, lfw = load_cache("utkface"), load_cache("lfw")
    names = [str(n) for n in lfw["files"]]
    rows = lfw_pairs()
    n = min(len(utk["sface"]), 22707)
    if a.flip_avg:
        tr = utk["sface"][:n].sum(1); te = lfw["sface"].sum(1)
    else:
        tr = utk["sface"][:n].reshape(-1, 128); te = lfw["sface"][:, 0]
    tr = tr / np.linalg.norm(tr, axis=1, keepdims=True); te = te / np.linalg.norm(te, axis=1, keepdims=True)
    print(f"train {len(tr)}  LFW pairs {len(rows)}  originals {verify(te, names, rows)[0]:.2f} %")
    mu = tr.mean(0); _, _, vt = np.linalg.svd(tr - mu, full_matrices=False)
    tr_t, te_t = torch.from_numpy(tr).float(), torch.from_numpy(te).float()
    for pt in a.points.split(","):
        step, lam = float(pt.split(":")[0]), float(pt.split(":")[1])
        qtr = np.round((tr - mu) @ vt.T / step).astype(int); qte = np.round((te - mu) @ vt.T / step).astype(int)
        rec = mu + (qte * step) @ vt
        print(f"PCA-128 step {step}: {hist_bits(qtr, qte) / 8:5.1f} B  LFW {verify(rec, names, rows)[0]:.2f} %", flush=True)
        m = IdCode(mu, vt, step, residual=not a.no_residual)
        main_p = [q for k_, q in m.named_parameters() if not k_.endswith("quantiles")]
        opt = torch.optim.Adam(main_p, 3e-4)
        aux_opt = torch.optim.Adam([q for k_, q in m.named_parameters() if k_.endswith("quantiles")], 1e-3)
        t0 = time.time()
        for it in range(a.steps):
            e = tr_t[torch.randint(0, len(tr_t), (512,))]
            rec_t, lik = m(e)
            loss = -torch.log2(lik).sum((1, 2)).mean() + lam * 100 * (1 - torch.cosine_similarity(rec_t, e, 1)).mean()
            opt.zero_grad(); loss.backward(); opt.step()
            aux = m.eb.loss(); aux_opt.zero_grad(); aux.backward(); aux_opt.step()
        m.eval()
        with torch.no_grad():
            m.eb.update(force=True)
            r, lik = m(te_t, training=False)
            ideal = -torch.log2(lik).sum((1, 2)).mean().item() / 8
            real = np.mean([len(s) for s in m.eb.compress(m.analysis(te_t)[:, :, None])])
        print(f"  learned lam {lam}: ideal {ideal:5.1f} B (rANS {real:.1f})  LFW {verify(r.numpy(), names, rows)[0]:.2f} %  "
              f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
