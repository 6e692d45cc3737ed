"""Record the golden stream of the shipped default (tests/data/default_sample.{sfc,json}).

``tests/test_pretrained.py::test_default_codec_decodes_the_golden_stream`` decodes this stream on
every machine the suite runs on and compares the decoded symbols with the digest recorded here:
the cross-machine promise of the bitstream. Run it once whenever ``pretrained/default.pt`` changes.

    python experiments/record_golden.py [--model default] [--out tests/data/default_sample.sfc]
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
from PIL import Image

from stylecodec.codec import Codec

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "astronaut_eileen_collins.png"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--out", default=str(ROOT / "tests" / "data" / "default_sample.sfc"))
    a = p.parse_args()
    torch.set_num_threads(1)
    codec = Codec.from_pretrained(a.model)
    data = codec.compress(Image.open(SAMPLE), bpp=0.01)
    y_hat, k = codec.decode_y(data)
    digest = hashlib.sha256(b"".join(y.numpy().astype("<f4").tobytes() for y in y_hat)).hexdigest()
    out = Path(a.out)
    out.write_bytes(data)
    meta = {"fingerprint": codec.fingerprint, "y_hat_sha256": digest, "bytes": len(data), "layers": k,
            "made_with": f"python experiments/record_golden.py --model {a.model}: Codec.from_pretrained(...)"
                         ".compress(PIL.Image.open(\"samples/astronaut_eileen_collins.png\"), bpp=0.01) on the "
                         "development machine; y_hat_sha256: sha256 over decode_y(stream) layers as little-endian float32"}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{out}: {len(data)} B, {k} layers, fingerprint {codec.fingerprint:#06x}, y_hat sha256 {digest[:16]}…")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
