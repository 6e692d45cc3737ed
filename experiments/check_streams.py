"""Digest of everything the codec writes and decodes, to show a refactor changes no bit.

    python experiments/check_streams.py --out experiments/results/restructure/streams_before.json
    python experiments/check_streams.py --out /tmp/after.json --compare experiments/results/restructure/streams_before.json

Faces: the first ``--limit`` (200) held-out faces of UTKFace (files sorted by name, the last
``--val-count`` = 1,000 are validation), loaded as the training loader loads them (centre
square, Lanczos to the model resolution, uint8) and coded as aligned faces (no alignment hook).
Model: ``--model`` (``pretrained/default.pt``). One torch thread (float32 results of the
training-side forward may depend on the thread count; the coder's float64 path does not).

Recorded, per face:

- sha256 of the stream at every quality (``Codec.compress(face, quality=q, aligned=True)``),
  of the default (model budget) stream and of the strict ``bpp=0.01, basic_bpp=0.003`` request
  (or its error message);
- sha256 of Ŵ+ decoded (``decode_latents``) from every quality's stream with 1, 2 and 3 layers;
- for the first ``--decode-faces`` faces: sha256 of the decoded uint8 image at every quality and
  layer count, of ``Codec.analyze`` (landmarks, identity) and of ``compress_latents`` stats
  (ideal bits, ŷ).

Training side, on a batch of the first 4 faces: sha256 of every output of the model's forward
(``quant`` noise / ste / mixed, seeded, qualities 0..3; the model in eval mode) and of the gradients of a fixed loss
through it, and of the heads' decoded basic-layer inputs (with and without LSET predictions).

``--compare`` prints how many entries differ from an earlier digest file (exit 1 if any).
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def sha(x) -> str:
    """sha256 of bytes, a numpy array or a tensor (dtype and shape included)."""
    import numpy as np
    import torch

    if isinstance(x, (bytes, bytearray)):
        return hashlib.sha256(bytes(x)).hexdigest()
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().contiguous().numpy()
    x = np.ascontiguousarray(x)
    h = hashlib.sha256(f"{x.dtype}{x.shape}".encode())
    h.update(x.tobytes())
    return h.hexdigest()


def sha_tree(obj) -> str:
    """One sha256 over a nested dict / list of tensors (keys sorted)."""
    import torch

    h = hashlib.sha256()

    def walk(o, path):
        if isinstance(o, dict):
            for k in sorted(o, key=str):
                walk(o[k], f"{path}/{k}")
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                walk(v, f"{path}[{i}]")
        elif isinstance(o, torch.Tensor):
            h.update(path.encode() + sha(o).encode())
        else:
            h.update(path.encode() + repr(o).encode())

    walk(obj, "")
    return h.hexdigest()


# ---- the names this script needs, before and after the restructure of issue 14 ------------------
def _load_rgb():
    try:
        from stylecodec.images import load_rgb
    except ImportError:
        from stylecodec.data import load_rgb
    return load_rgb


def _forward(model, x, q, quant):
    params = inspect.signature(model.forward).parameters
    kw = {"synthesise": False} if "synthesise" in params else {"render": False}
    return model(x, q, n_layers=3, quant=quant, **kw)


def _heads_inputs(model, y_basic, q, with_pred):
    try:
        from stylecodec.analysis.heads import decoded_inputs
    except ImportError:
        from stylecodec.train.heads import decoded_inputs
    return decoded_inputs(model, y_basic, q, with_pred)


def training_digest(model, x) -> dict:
    import torch

    out: dict[str, str] = {}
    q = torch.arange(len(x)) % model.num_qualities
    for quant in ("noise", "ste", "mixed"):
        torch.manual_seed(1234)
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            o = _forward(model, x, q, quant)
            keep = {k: o[k] for k in ("ws", "y", "y_hat", "context", "means", "scales", "likelihoods", "ws_hat")}
            out[f"forward/{quant}"] = sha_tree(keep)
            loss = sum(-torch.log2(p).sum() for p in o["likelihoods"]) + sum((y * y).sum() for y in o["y_hat"]) \
                + sum(w.square().sum() for w in o["ws_hat"].values())
            loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None and not n.startswith("G.")}
        out[f"grad/{quant}"] = sha_tree(grads)
        model.zero_grad(set_to_none=True)
    with torch.no_grad():
        y0 = model.transforms.analyse(model.E(x))[0]
    for with_pred in (False, True):
        out[f"heads_inputs/pred={with_pred}"] = sha_tree(_heads_inputs(model, y0, q, with_pred))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "pretrained", "default.pt"))
    ap.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "data", "utkface"))
    ap.add_argument("--val-count", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--decode-faces", type=int, default=8, help="faces whose decoded images are hashed")
    ap.add_argument("--out", required=True, help="JSON digest file to write")
    ap.add_argument("--compare", help="an earlier digest file: report every difference (exit 1 if any)")
    args = ap.parse_args()

    import torch
    from tqdm import tqdm

    from stylecodec.codec import Codec
    from stylecodec.data import list_images, split_files
    from stylecodec.errors import StylecodecError

    torch.set_num_threads(1)
    load_rgb = _load_rgb()
    codec = Codec.from_pretrained(args.model)
    r = codec.resolution
    files = split_files(list_images(args.images), "val", args.val_count)[:args.limit]
    faces: dict[str, dict] = {}
    t0 = time.perf_counter()
    arrays = []
    for i, name in enumerate(tqdm(files, desc="faces", unit="face")):
        arr = load_rgb(os.path.join(args.images, name), r)
        if i < 4:
            arrays.append(arr)
        rec: dict[str, object] = {}
        for q in codec.quality_range:
            data = codec.compress(arr, quality=q, aligned=True)
            rec[f"q{q}"] = sha(data)
            rec[f"q{q}/bytes"] = len(data)
            for k in (1, 2, 3):
                rec[f"q{q}/ws{k}"] = sha(codec.decode_latents(data, k))
                if i < args.decode_faces:
                    rec[f"q{q}/img{k}"] = sha(codec.decompress(data, k, output="array"))
            if i < args.decode_faces:
                a = codec.analyze(data)
                rec[f"q{q}/analyze"] = sha(a["landmarks"]) + sha(a["identity"]) + str(a["bytes_read"])
        rec["default"] = sha(codec.compress(arr, aligned=True))
        try:
            rec["strict"] = sha(codec.compress(arr, bpp=0.01, basic_bpp=0.003, aligned=True))
        except StylecodecError as e:
            rec["strict"] = f"error: {e}"
        if i < args.decode_faces:
            x = codec.preprocess(arr, aligned=True)
            with torch.no_grad():
                ys = [y.detach().to("cpu", torch.float64) for y in codec.model.transforms.analyse(codec.model.E(x))]
            stats: list = []
            streams = codec.compress_latents(ys, codec.quality_range[-1], stats=stats)
            rec["stats"] = sha(streams[0]) + sha_tree(stats)
        faces[name] = rec
    x = torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1.0 for a in arrays])
    result = {"model": os.path.basename(args.model), "fingerprint": f"0x{codec.fingerprint:04x}",
              "faces": len(faces), "qualities": len(codec.quality_range), "seconds": round(time.perf_counter() - t0, 1),
              "training": training_digest(codec.model, x), "per_face": faces}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1, sort_keys=True)
        fh.write("\n")
    n_entries = sum(len(v) for v in faces.values()) + len(result["training"])
    print(f"{len(faces)} faces x {len(codec.quality_range)} qualities, {n_entries} digests in "
          f"{result['seconds']} s -> {args.out}")
    if args.compare:
        with open(args.compare) as fh:
            ref = json.load(fh)
        diffs = [f"training/{k}" for k in set(ref["training"]) | set(result["training"])
                 if ref["training"].get(k) != result["training"].get(k)]
        missing = sorted(set(ref["per_face"]) - set(faces))
        if missing:
            print(f"{len(missing)} faces of {args.compare} not coded here (--limit): compared {len(faces)}")
        for name in sorted(faces):
            a, b = ref["per_face"].get(name, {}), faces.get(name, {})
            diffs += [f"{name}/{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        print(f"compared with {args.compare}: {n_entries} entries, {len(diffs)} differ")
        for d in diffs[:40]:
            print("  differs:", d)
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
