"""Provenance of the report's stylecodec LFW row (see README.md beside this file); run from the repo root.

    python experiments/results/anchors_utk200/lfw_seed_check.py seed    # copy verify-lfw's basic cache in
    python experiments/results/anchors_utk200/lfw_seed_check.py check   # recompute a sample, compare

``seed`` copies the cache of ``stylecodec verify-lfw --layers basic --judge sface --quality 5 --model
pretrained/default.pt`` (CodedFaces at q5 + SFace, image_a coded: the computation of run_lfw's
stylecodec-basic entry) to that entry's protocol-2 cache file. ``check`` recomputes, through the harness's
path with the codec ``eval --align auto`` builds, the faces the old (protocol 1) entry coded differently plus
60 random ones, and prints the largest difference from the copied embeddings. Paths are this run's."""
import hashlib, json, shutil, os, sys
import numpy as np
from pathlib import Path
from stylecodec.eval.lfw import ALIGN_NAME, PROTOCOL, CodedFaces, pixel_embedder
from stylecodec.eval.common import slug
from stylecodec.metrics.verification import default_pairs_csv
from stylecodec.eval.harness import load_codec
from PIL import Image
csv = default_pairs_csv()
config = {"pairs_csv": str(csv), "fingerprint": "0xfca3", "quality": 5, "bpp_target": None, "align": ALIGN_NAME,
          "vvc_qp": 63, "protocol": PROTOCOL}
key = config | {"resolution": 256, "judge": "sface"}
tag = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
dst = Path("runs/anchors_utk200/lfw_cache") / f"{tag}-{slug('stylecodec-basic_q5')}.npz"
src = Path(os.path.expanduser("~/.cache/stylecodec/lfw/b9d9d6f41f61dc9b.npz"))
print(csv, dst)
if sys.argv[1] == "seed":
    shutil.copyfile(src, dst)
    sys.exit()
z = np.load(dst); cache = dict(zip(z["keys"].tolist(), z["emb"]))
old = dict(zip(*(lambda o: (o["keys"].tolist(), o["emb"]))(np.load("runs/anchors_utk200/lfw_cache/7f416828b1-stylecodec-basic_q5-880ae0.npz"))))
differ = [k for k in cache if k.endswith("\ta") and np.abs(cache[k] - old[k]).max() > 1e-6]
rng = np.random.default_rng(0)
coded = sorted(k for k in cache if k.endswith("\ta"))
sample = differ + [coded[i] for i in rng.choice(len(coded), 60, replace=False)]
codec = load_codec("pretrained/default.pt", "cpu", "auto")          # as eval builds it (--align auto)
coder, emb = CodedFaces(codec, 1, 5, None), pixel_embedder("sface", cache=True)
imgs = [np.asarray(coder(np.asarray(Image.open(csv.parent / "lfw" / k.split("\t")[0]).convert("RGB")))) for k in sample]
e = np.asarray(emb(imgs), np.float64); e /= np.linalg.norm(e, axis=1, keepdims=True)
d = np.array([np.abs(e[i] - cache[k]).max() for i, k in enumerate(sample)])
print(f"{len(differ)} items that the old (double-aligned) entry coded differently + 60 random: "
      f"max |diff| vs seeded cache {d.max():.2e}; vs old entry on the {len(differ)}: "
      f"{min(np.abs(e[i] - old[k]).max() for i, k in enumerate(differ)):.2e} (min)")
