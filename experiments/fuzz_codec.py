"""Fuzz the full decoder (Codec.decompress / decode_latents) with damaged and garbage streams.

Valid streams of a model (random W+ near w_avg or random whitened latents, random qualities) are damaged (the mutations of
fuzz_supervisor.py: truncation, bit flips, overwrites, insertions, appended / random bytes, random
single-layer damage, header fields and layer payloads re-packed with valid CRCs, valid layer cuts)
and decoded in a worker process with a watchdog, so crashes and hangs are counted, not fatal.

    python experiments/fuzz_codec.py --cases 10000                # tiny random model built on the fly
    python experiments/fuzz_codec.py --model pretrained/default.pt --cases 10000

Outcomes: ok_intact (accepted; equals the original decoded at that many layers), ok_changed
(accepted, decodes to something else: damage that the CRC-8 and the decoder's checks both
missed, or a header field edited with valid CRCs), BitstreamError, other:<exception>, crash,
timeout. The summary ends with the detection rate of random single-layer damage.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

from fuzz_supervisor import mutate, report, supervise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_BASES = 16


def tiny_model(path: str) -> None:
    import torch

    from stylecodec.model import StyleCodecModel, tiny_config
    from stylecodec.zoo import save_model

    torch.manual_seed(0)
    save_model(StyleCodecModel(tiny_config()), path, {"note": "random weights (fuzzing only)"})


def _latents(codec, data: bytes, layers) -> "torch.Tensor":
    """The decoded latents as one tensor: Ŵ+ for a W+ codec, else every layer's ŷ concatenated."""
    import torch

    if hasattr(codec.model, "transforms"):
        return codec.decode_latents(data, layers)
    return torch.cat(codec.decode_y(data, layers)[0], 1)


def make_bases(codec, seed: int):
    """[(stream, {k: (latents at k layers, image at k layers)})] for N_BASES random latents (W+ near
    w_avg for a W+ codec; whitened N(0, 1) latents for a machine-first one)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    bases = []
    for b in range(N_BASES):
        q = b % codec.model.num_qualities
        if hasattr(codec.model, "G"):
            w_avg = codec.model.G.mapping.w_avg.detach().cpu()
            ws = w_avg + torch.randn(1, codec.model.G.num_ws, w_avg.numel(), generator=gen)
            data = codec.compress_ws(ws, q)[0]
        else:
            ys = [torch.randn(1, d, generator=gen, dtype=torch.float64) for d in codec.model.latent_dims]
            data = codec.compress_latents(ys, q)[0]
        ref = {k: (_latents(codec, data, k), codec.decompress(data, k, output="array")) for k in (1, 2, 3)}
        bases.append((data, ref))
    return bases


def run_case(codec, bases, case: int, seed: int) -> tuple[str, str]:
    import numpy as np
    import torch

    from stylecodec.bitstream import BitstreamError

    rng = random.Random(seed * 1_000_003 + case)
    data, ref = bases[rng.randrange(len(bases))]
    kind, bad = mutate(rng, data, codec.key, codec.model.num_qualities)
    layers = rng.choice(["basic", "middle", "enhanced", 1, 2, 3])
    k = layers if isinstance(layers, int) else ("basic", "middle", "enhanced").index(layers) + 1
    try:
        if rng.random() < 0.5:
            ws = _latents(codec, bad, layers)
            candidates = [ref[j][0] for j in range(1, k + 1)]
            intact = any(torch.equal(ws, c) for c in candidates)
        else:
            img = codec.decompress(bad, layers, output="array")
            intact = any(np.array_equal(img, ref[j][1]) for j in range(1, k + 1))
        return kind, "ok_intact" if intact else "ok_changed"
    except BitstreamError:
        return kind, "BitstreamError"
    except Exception as e:  # noqa: BLE001  (the point is to count anything else)
        return kind, f"other:{type(e).__name__}"


def worker(model: str, start: int, stop: int, seed: int) -> None:
    import torch

    sys.path.insert(0, ROOT)
    torch.set_num_threads(1)
    from stylecodec.codec import Codec

    codec = Codec.from_pretrained(model)
    bases = make_bases(codec, seed)
    print("ready", flush=True)
    for case in range(start, stop):
        t = time.perf_counter()
        kind, outcome = run_case(codec, bases, case, seed)
        print(case, kind, outcome, f"{(time.perf_counter() - t) * 1e3:.3f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint path (default: a tiny random model built on the fly)")
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--worker", nargs=2, type=int, metavar=("START", "STOP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.model, *args.worker, args.seed)
        return 0
    tmp = None
    if args.model is None:
        sys.path.insert(0, ROOT)
        tmp = tempfile.TemporaryDirectory()
        args.model = os.path.join(tmp.name, "tiny.pt")
        tiny_model(args.model)
    t0 = time.time()
    outcomes, by_kind, times = supervise(
        lambda case: [sys.executable, os.path.abspath(__file__), "--worker", str(case), str(args.cases),
                     "--seed", str(args.seed), "--model", args.model],
        args.cases, args.timeout, start_timeout=600)
    print(f"{args.cases} cases in {time.time() - t0:.1f} s, model {args.model}")
    report(outcomes, by_kind, times, ("ok_intact", "ok_changed"))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
