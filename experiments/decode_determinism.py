"""Do decoded pixels depend on the thread count? Streams of held-out faces decoded in child processes
with 1 and 2 threads, by the shipped decode path and (``--onednn``) with oneDNN's convolutions.

    python experiments/decode_determinism.py --model default --faces 24 [--onednn]

Prints the number of pixel values (uint8, R x R x 3 per face) that differ between the two thread counts.
The decode path renders one face at a time with oneDNN off (``MachineFirstModel.render``); ``--onednn``
patches it back on in the children, to show what that choice avoids.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_CHILD = r"""
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
from stylecodec.codec import Codec
codec = Codec.from_pretrained(sys.argv[1])
if sys.argv[4] == "1":                                   # oneDNN on in the decoder (not the shipped path)
    ref = codec.model.refiner
    if ref is not None:
        plain = ref.forward
        def forward(x, y):
            with torch.backends.mkldnn.flags(enabled=True, allow_tf32=None):
                return plain(x, y)
        ref.forward = forward
data = np.load(sys.argv[3], allow_pickle=False)
streams = [bytes(data[f"s{i}"]) for i in range(len(data.files))]
np.save(sys.argv[3] + f".{sys.argv[2]}.npy", np.stack([codec.decompress(s, output="array") for s in streams]))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--faces", type=int, default=24, help="held-out UTKFace faces (the last ones by name)")
    p.add_argument("--onednn", action="store_true", help="decode with oneDNN's convolutions (not the shipped path)")
    a = p.parse_args()

    from stylecodec.codec import Codec
    from stylecodec.data import default_data_root, list_images

    root = default_data_root()
    codec = Codec.from_pretrained(a.model)
    names = list_images(root)[-a.faces:]
    streams = [codec.compress(root / n) for n in names]
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "streams.npz")
        np.savez(path, **{f"s{i}": np.frombuffer(s, np.uint8) for i, s in enumerate(streams)})
        out = {}
        for threads in (1, 2):
            subprocess.run([sys.executable, "-c", _CHILD, a.model, str(threads), path, "1" if a.onednn else "0"],
                           check=True)
            out[threads] = np.load(f"{path}.{threads}.npy")
    diff = out[1] != out[2]
    print(f"{a.model}, {len(streams)} faces, decoder {'with' if a.onednn else 'without'} oneDNN: {int(diff.sum())} of "
          f"{diff.size} pixel values differ between 1 and 2 threads (max |difference| "
          f"{int(np.abs(out[1].astype(int) - out[2]).max())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
