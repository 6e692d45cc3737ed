"""Estimated bytes per part and quality of a machine-first quality table, from the training latents:
the entropy of each coded element's quantised values under a Gaussian of its own std (the LSET's
static prior for the basic layer; an upper bound for the conditioned layers).

    python experiments/calibrate_table.py --run runs/mf
"""
import argparse
import math

import numpy as np
import torch

from stylecodec.machine_first import MachineFirstModel
from stylecodec.train.machine_first import QUALITY_TABLE, quality_gains


def gauss_bits(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Mean bits per element of round(y * g) under N(0, (std*g)^2) discretised (min scale 0.11)."""
    s = np.maximum(y.std(0) * g, 0.11)
    q = np.round(y * g)
    from scipy.stats import norm
    p = norm.cdf((q + 0.5) / s) - norm.cdf((q - 0.5) / s)
    return -np.log2(np.maximum(p, 1e-9)).mean(0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--run", required=True)
    a = p.parse_args()
    ck = torch.load(f"{a.run}/model.pt", weights_only=True)
    m = MachineFirstModel(ck["config"])
    m.load_state_dict({k: v.float() for k, v in ck["state_dict"].items()})
    z = np.load(f"{a.run}/latents.npz")
    ys = np.concatenate([z["y0"], z["y1"], z["y2"]], 1)[::4]
    g = quality_gains(m, QUALITY_TABLE).numpy()
    kid = m.id_dims
    o1, o2 = m.offsets[1], m.offsets[2]
    for q in range(m.num_qualities):
        b = gauss_bits(ys, g[q]) / 8
        print(f"q{q}: identity {b[:kid].sum():5.1f} B  shape {b[kid:o1].sum():4.1f} B  middle {b[o1:o2].sum():5.1f} B  "
              f"enhanced {b[o2:].sum():5.1f} B  | basic {b[:o1].sum():5.1f}  total {b.sum():5.1f}")


if __name__ == "__main__":
    main()
