"""One digest of what a checkout decodes: sha256 over decode_y of every quality and layer prefix
of the first N held-out faces. Run it under two checkouts (e.g. bitstream version 1 and 2) to
check that a change of the entropy coder or the container left the decoded latents unchanged.

    python experiments/latents_digest.py --model pretrained/default.pt -n 50
    git worktree add /tmp/v1 cca278f && PYTHONPATH=/tmp/v1 python experiments/latents_digest.py ... # the same digest

Prints the digest and the total stream bytes (what the coder and the container changed).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "data", "utkface"))
    ap.add_argument("--val-count", type=int, default=1000)
    ap.add_argument("-n", type=int, default=50, help="the first N held-out faces")
    args = ap.parse_args()

    import torch

    from stylecodec.codec import Codec
    from stylecodec.data import ImageFolder

    torch.set_num_threads(1)
    codec = Codec.from_pretrained(args.model)
    faces = ImageFolder(args.images, codec.resolution, "val", args.val_count)
    h, total = hashlib.sha256(), 0
    for i in range(min(args.n, len(faces))):
        ys = codec.encode_latents(faces[i][None].to(codec.device))
        for q in codec.quality_range:
            data = codec.compress_latents(ys, q)[0]
            total += len(data)
            for k in (1, 2, 3):
                y_hat, _ = codec.decode_y(data, k)
                h.update(b"".join(y.numpy().astype("<f4").tobytes() for y in y_hat))
    print(f"{min(args.n, len(faces))} faces x {len(codec.quality_range)} qualities x 3 prefixes: decoded latents "
          f"sha256 {h.hexdigest()}, stream bytes {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
