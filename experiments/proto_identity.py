"""Prototype (issue 16): how many bytes does LFW verification need from SFace's embedding?

Compares, on cached teacher outputs (stylecodec.analysis.face_teachers / stylecodec.eval.lfw_features, ~/.cache/stylecodec/teacher2), both images of every LFW
pair coded:
- plain PCA (fitted on UTKFace train faces + mirrors) + uniform quantiser, bits = cross-entropy
  under per-dimension histograms fitted on UTKFace train (not on LFW);
- a learned transform: MLP analysis -> CompressAI EntropyBottleneck -> MLP synthesis, trained on
  UTKFace train embeddings for rate + lambda * (1 - cos).

    python experiments/proto_identity.py [--lambdas 8 16 32 64] [--steps 4000]
"""
from __future__ import annotations

import argparse
import csv
import glob
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stylecodec.metrics.nme import nme_per_image as nme
from stylecodec.metrics.verification import kfold_accuracy
from stylecodec.paths import cache_root, shared_dir


def load_cache(name: str) -> dict:
    d = cache_root() / "teacher2"
    full = sorted(d.glob(f"{name}-*.npz"))
    if full:
        with np.load(full[-1]) as z:
            return {k: z[k] for k in z.files}
    parts = sorted(glob.glob(str(d / f"{name}-*.npz.parts" / "part-*.npz")))
    ps = [dict(np.load(p)) for p in parts]
    return {k: np.concatenate([p[k] for p in ps]) for k in ps[0]}


def lfw_pairs():
    with open(shared_dir() / "data" / "lfw_pairs.csv") as f:
        rows = list(csv.DictReader(f))
    return rows


def verify(emb: np.ndarray, names: list[str], rows) -> tuple[float, float]:
    idx = {n: i for i, n in enumerate(names)}
    a = np.array([idx[r["image_a"]] for r in rows])
    b = np.array([idx[r["image_b"]] for r in rows])
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-9)
    sim = (e[a] * e[b]).sum(1)
    same = np.array([r["same_person"] == "1" for r in rows])
    folds = np.array([int(r["fold"]) for r in rows])
    acc, _ = kfold_accuracy(sim, same, folds)
    return 100 * acc.mean(), 100 * acc.std()


def hist_bits(train_q: np.ndarray, test_q: np.ndarray) -> float:
    """Mean bits per vector of test symbols under per-dimension histograms of train symbols (+0.5 smoothing)."""
    bits = 0.0
    for j in range(train_q.shape[1]):
        lo = min(train_q[:, j].min(), test_q[:, j].min())
        hi = max(train_q[:, j].max(), test_q[:, j].max())
        cnt = np.bincount(train_q[:, j] - lo, minlength=hi - lo + 1).astype(float) + 0.5
        p = cnt / cnt.sum()
        bits += -np.log2(p[test_q[:, j] - lo]).sum()
    return bits / len(test_q)


class Learned(nn.Module):
    def __init__(self, d_in=128, d=32, hidden=256):
        super().__init__()
        from compressai.entropy_models import EntropyBottleneck
        self.ga = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d))
        self.gs = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                nn.Linear(hidden, d_in))
        self.eb = EntropyBottleneck(d)

    def forward(self, e):
        y = self.ga(e)
        y_hat, lik = self.eb(y[:, :, None])
        return self.gs(y_hat[:, :, 0]), lik


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lambdas", type=float, nargs="*", default=[8, 16, 32, 64])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--pca", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    utk, lfw = load_cache("utkface"), load_cache("lfw")
    names_u = [str(n) for n in utk["files"]] if "files" in utk else None
    n_u = len(utk["sface"])
    n_train = min(n_u, 23707 - 1000)
    tr = utk["sface"][:n_train].reshape(-1, 128)                # faces + mirrors
    names_l = [str(n) for n in lfw["files"]] if "files" in lfw else None
    rows = lfw_pairs()
    if names_l is None or len(names_l) < 7701:
        # partial LFW cache: names from the sorted pair list, keep pairs with both images present
        allnames = sorted({r["image_a"] for r in rows} | {r["image_b"] for r in rows})
        names_l = allnames[:len(lfw["sface"])]
        have = set(names_l)
        rows = [r for r in rows if r["image_a"] in have and r["image_b"] in have]
    test = lfw["sface"][:, 0]
    print(f"UTK train vectors {len(tr)}, LFW images {len(test)}, pairs {len(rows)}")
    print(f"original SFace on aligned LFW: {verify(test, names_l, rows)[0]:.2f} %")

    if a.pca:
        mu = tr.mean(0)
        u, s, vt = np.linalg.svd(tr - mu, full_matrices=False)
        for k in (64, 96, 128):
            for step in (0.06, 0.08, 0.10, 0.13, 0.17):
                ztr = (tr - mu) @ vt[:k].T
                zte = (test - mu) @ vt[:k].T
                qtr, qte = np.round(ztr / step).astype(int), np.round(zte / step).astype(int)
                rec = mu + (qte * step) @ vt[:k]
                bits = hist_bits(qtr, qte)
                print(f"PCA k={k:3d} step={step:.3f}: {bits / 8:5.1f} B  LFW {verify(rec, names_l, rows)[0]:.2f} %")

    tr_t = torch.from_numpy(tr).float()
    te_t = torch.from_numpy(test).float()
    for lam in a.lambdas:
        m = Learned(d=a.dim)
        opt = torch.optim.Adam([q for n, q in m.named_parameters() if not n.endswith("quantiles")], 1e-3)
        aux_opt = torch.optim.Adam([q for n, q in m.named_parameters() if n.endswith("quantiles")], 1e-3)
        t0 = time.time()
        for it in range(a.steps):
            idx = torch.randint(0, len(tr_t), (256,))
            e = tr_t[idx]
            rec, lik = m(e)
            bits = -torch.log2(lik).sum((1, 2)).mean()
            dist = (1 - torch.cosine_similarity(rec, e, 1)).mean()
            loss = bits + lam * 100 * dist
            opt.zero_grad()
            loss.backward()
            opt.step()
            aux = m.eb.loss()
            aux_opt.zero_grad()
            aux.backward()
            aux_opt.step()
            if it == int(a.steps * 0.7):
                for g in opt.param_groups:
                    g["lr"] = 2e-4
        m.eval()
        with torch.no_grad():
            rec, lik = m(te_t)
            bits = -torch.log2(lik).sum((1, 2)).mean().item()
            cos = torch.cosine_similarity(rec, te_t, 1).mean().item()
        acc = verify(rec.numpy(), names_l, rows)[0]
        print(f"learned d={a.dim} lam={lam:g}: {bits / 8:5.1f} B  cos {cos:.3f}  LFW {acc:.2f} %  ({time.time() - t0:.0f} s)")



def shape_pca(utk: dict, n_val: int = 1000) -> None:
    """Plain PCA shape model of dlib's 68 points: bytes vs NME on held-out faces."""
    n = len(utk["landmarks"])
    lm, found = utk["landmarks"].reshape(n, -1).astype(np.float64), utk["found"]
    n_train = min(n, 23707 - n_val)
    tr = lm[:n_train][found[:n_train]]
    te_idx = np.arange(23707 - n_val, n) if n > 23707 - n_val else np.arange(n_train - 300, n_train)
    te = lm[te_idx][found[te_idx]]
    mu = tr.mean(0)
    _, _, vt = np.linalg.svd(tr - mu, full_matrices=False)
    sd = ((tr - mu) @ vt.T).std(0)
    for k in (4, 6, 8, 10, 12, 16):
        for step in (0.5, 1.0):
            ztr, zte = (tr - mu) @ vt[:k].T / sd[:k], (te - mu) @ vt[:k].T / sd[:k]
            qtr, qte = np.round(ztr / step).astype(int), np.round(zte / step).astype(int)
            rec = mu + (qte * step * sd[:k]) @ vt[:k]
            e = nme(rec.reshape(-1, 68, 2), te.reshape(-1, 68, 2)).mean()
            print(f"shape PCA k={k:2d} step={step}: {hist_bits(qtr, qte) / 8:4.1f} B  NME {e:.4f}  (n={len(te)})")


class Joint(nn.Module):
    """[sface 128 | facenet 512 | shape 136] -> y [d] -> (sface-like 128, shape 136); linear (PCA-initialised)
    + residual MLP on both sides."""

    def __init__(self, d_id: int, d_sh: int, pca_id, pca_sh, use_facenet: bool = True, hidden: int = 512):
        super().__init__()
        from compressai.entropy_models import EntropyBottleneck
        self.use_facenet = use_facenet
        d_in = 128 + (512 if use_facenet else 0) + 136
        d = d_id + d_sh
        self.lin_a = nn.Linear(d_in, d)
        self.lin_s_id = nn.Linear(d, 128)
        self.lin_s_sh = nn.Linear(d, 136)
        with torch.no_grad():
            self.lin_a.weight.zero_(); self.lin_a.bias.zero_()
            (mu_i, v_i, sd_i), (mu_s, v_s, sd_s) = pca_id, pca_sh
            self.lin_a.weight[:d_id, :128] = torch.from_numpy(v_i[:d_id] / sd_i[:d_id, None]).float()
            self.lin_a.bias[:d_id] = -torch.from_numpy(v_i[:d_id] @ mu_i / sd_i[:d_id]).float()
            o = d_in - 136
            self.lin_a.weight[d_id:, o:] = torch.from_numpy(v_s[:d_sh] / sd_s[:d_sh, None]).float()
            self.lin_a.bias[d_id:] = -torch.from_numpy(v_s[:d_sh] @ mu_s / sd_s[:d_sh]).float()
            self.lin_s_id.weight.zero_(); self.lin_s_sh.weight.zero_()
            self.lin_s_id.weight[:, :d_id] = torch.from_numpy((v_i[:d_id] * sd_i[:d_id, None]).T).float()
            self.lin_s_id.bias[:] = torch.from_numpy(mu_i).float()
            self.lin_s_sh.weight[:, d_id:] = torch.from_numpy((v_s[:d_sh] * sd_s[:d_sh, None]).T).float()
            self.lin_s_sh.bias[:] = torch.from_numpy(mu_s).float()
        self.mlp_a = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d))
        self.mlp_s = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                   nn.Linear(hidden, 128 + 136))
        for m in (self.mlp_a[-1], self.mlp_s[-1]):
            nn.init.zeros_(m.weight); nn.init.zeros_(m.bias)
        self.eb = EntropyBottleneck(d)
        self.scale = nn.Parameter(torch.ones(d))

    def forward(self, s, f, sh, noise=True):
        x = torch.cat([s, f, sh] if self.use_facenet else [s, sh], 1)
        y = (self.lin_a(x) + self.mlp_a(x)) * self.scale
        y_hat, lik = self.eb(y[:, :, None], training=noise)
        y_hat = y_hat[:, :, 0] / self.scale
        r = self.mlp_s(y_hat)
        return self.lin_s_id(y_hat) + r[:, :128], self.lin_s_sh(y_hat) + r[:, 128:], lik


def pca_fit(x: np.ndarray):
    mu = x.mean(0)
    _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
    sd = ((x - mu) @ vt.T).std(0)
    return mu, vt, sd


def joint_main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--lambdas", type=float, nargs="+", default=[1.0])
    p.add_argument("--lm-weight", type=float, default=1.0)
    p.add_argument("--d-id", type=int, default=48)
    p.add_argument("--d-sh", type=int, default=12)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--no-facenet", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    utk, lfw = load_cache("utkface"), load_cache("lfw")
    n = min(len(utk["sface"]), 22707)
    ok = utk["found"][:n]
    # faces + mirrors (mirror landmarks: x -> 1 - x with dlib's left/right index permutation)
    perm = np.array(MIRROR68)
    lm = utk["landmarks"][:n]
    lm_m = lm[:, perm].copy(); lm_m[..., 0] = 1 - lm_m[..., 0]
    S = np.concatenate([utk["sface"][:n, 0], utk["sface"][:n, 1]])[np.concatenate([ok, ok])]
    Fn = np.concatenate([utk["facenet"][:n, 0], utk["facenet"][:n, 1]])[np.concatenate([ok, ok])]
    L = np.concatenate([lm, lm_m]).reshape(2 * n, -1)[np.concatenate([ok, ok])]
    pca_id, pca_sh = pca_fit(S), pca_fit(L)
    names_l = [str(x) for x in lfw["files"]]
    rows = lfw_pairs()
    tS, tF = torch.from_numpy(lfw["sface"][:, 0]).float(), torch.from_numpy(lfw["facenet"][:, 0]).float()
    tL = torch.from_numpy(lfw["landmarks"].reshape(len(names_l), -1)).float()
    fl = lfw["found"]
    S_t, F_t, L_t = (torch.from_numpy(v).float() for v in (S, Fn, L))
    print(f"train {len(S_t)} vectors; LFW originals {verify(lfw['sface'][:, 0], names_l, rows)[0]:.2f} %")
    for lam in a.lambdas:
        m = Joint(a.d_id, a.d_sh, pca_id, pca_sh, use_facenet=not a.no_facenet)
        main_p = [q for nme_, q in m.named_parameters() if not nme_.endswith("quantiles")]
        opt = torch.optim.Adam(main_p, 1e-3)
        aux_opt = torch.optim.Adam([q for nme_, q in m.named_parameters() if nme_.endswith("quantiles")], 1e-3)
        t0 = time.time()
        for it in range(a.steps):
            idx = torch.randint(0, len(S_t), (512,))
            s, f, sh = S_t[idx], F_t[idx], L_t[idx]
            e, l, lik = m(s, f, sh)
            bits = -torch.log2(lik).sum((1, 2)).mean()
            d_id = (1 - torch.cosine_similarity(e, s, 1)).mean()
            io = (sh.view(-1, 68, 2)[:, 36] - sh.view(-1, 68, 2)[:, 45]).norm(dim=1)
            d_lm = ((l - sh).view(-1, 68, 2).norm(dim=2).mean(1) / io).mean()
            loss = bits + lam * 100 * (d_id + a.lm_weight * d_lm)
            opt.zero_grad(); loss.backward(); opt.step()
            aux = m.eb.loss(); aux_opt.zero_grad(); aux.backward(); aux_opt.step()
            if it == int(a.steps * 0.7):
                for g in opt.param_groups:
                    g["lr"] = 2e-4
        m.eval()
        with torch.no_grad():
            m.eb.update(force=True)
            e, l, lik = m(tS, tF, tL, noise=False)
            bits = -torch.log2(lik).sum((1, 2))
            # the real coder (CompressAI rANS) on the same symbols
            x = torch.cat([tS, tF, tL] if m.use_facenet else [tS, tL], 1)
            y = (m.lin_a(x) + m.mlp_a(x)) * m.scale
            strings = m.eb.compress(y[:, :, None])
            real = np.mean([len(s_) for s_ in strings])
        acc = verify(e.numpy(), names_l, rows)[0]
        nm = nme(l.view(-1, 68, 2).numpy()[fl], tL.view(-1, 68, 2).numpy()[fl]).mean()
        nm_id = bits[:, ].mean().item() / 8
        print(f"joint lam={lam:g} lm={a.lm_weight:g} d={a.d_id}+{a.d_sh}: ideal {nm_id:5.2f} B (rANS {real:.1f} B)  "
              f"LFW head {acc:.2f} %  NME(LFW) {nm:.4f}  ({time.time() - t0:.0f} s)", flush=True)


# dlib 68-point indices of the mirror image (left <-> right)
MIRROR68 = ([16 - i for i in range(17)] + [26 - i for i in range(10)] + list(range(27, 31)) + [35, 34, 33, 32, 31]
            + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40] + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
            + [64, 63, 62, 61, 60, 67, 66, 65])


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] == ["joint"]:
        joint_main(sys.argv[2:])
    elif sys.argv[1:2] == ["shape"]:
        shape_pca(load_cache("utkface"))
    else:
        main()
