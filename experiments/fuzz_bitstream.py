"""Fuzz the stream reader (and, by default, the entropy decoder behind it).

Valid 3-layer streams are made with the real coder, then damaged (the mutations of
fuzz_supervisor.py: truncation, bit flips, overwrites, insertions, appended or random bytes,
random single-layer damage, payloads and header fields re-packed with valid CRCs, valid layer
cuts). Each case is read with the model's key (fingerprint byte, keyed CRCs) and decoded in a
worker process with a watchdog, so crashes and hangs are counted, not fatal.

    python experiments/fuzz_bitstream.py --cases 10000
    python experiments/fuzz_bitstream.py --cases 100000 --kinds layer     # the damage-detection rate alone

Outcomes: ok_intact (accepted, decodes to the original's layers), ok_undetected (accepted,
decodes to something else), BitstreamError, other:<exception>, crash, timeout. The summary ends
with the detection rate of random single-layer damage.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time

from fuzz_supervisor import KINDS, mutate, report, supervise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = [16, 24, 40]
N_BASES = 32
N_QUALITIES = 6


def _key():
    from stylecodec.bitstream import ModelKey

    return ModelKey(hashlib.sha256(b"fuzz_bitstream").digest())


def make_bases(seed: int):
    """Valid streams: (bytes, per-group (means, scales), decoded ŷ per group)."""
    import torch

    from stylecodec.bitstream import StreamHeader, pack
    from stylecodec.entropy import gaussian

    bases = []
    for b in range(N_BASES):
        gen = torch.Generator().manual_seed(seed * 1000 + b)
        enc, steps, decoded = gaussian.StreamEncoder(), [], []
        for n in SIZES:
            for chunk in torch.arange(n).chunk(4):
                m = torch.randn(len(chunk), generator=gen) * 2
                s = torch.rand(len(chunk), generator=gen) * 1.5 + 0.1
                decoded.append(enc.encode(m + torch.randn(len(chunk), generator=gen) * s, m, s))
                steps.append((m, s))
            enc.end_layer()
        data = pack(StreamHeader(256, b % N_QUALITIES), enc.finish(), _key())
        bases.append((data, steps, decoded))
    return bases


def run_case(case: int, seed: int, bases, entropy: bool, kinds=KINDS) -> tuple[str, str]:
    import torch

    from stylecodec.bitstream import BitstreamError, unpack
    from stylecodec.entropy import gaussian

    rng = random.Random(seed * 1_000_003 + case)
    original, steps, decoded = bases[rng.randrange(len(bases))]
    kind, data = mutate(rng, original, _key(), N_QUALITIES, kinds)
    try:
        header, payloads = unpack(data, _key())
        if header.quality >= N_QUALITIES or header.resolution != 256:
            raise BitstreamError("a header field this model does not have")
        intact = payloads == unpack(original)[1][:len(payloads)]
        if entropy:
            dec, out = gaussian.StreamDecoder(payloads, SIZES), []
            for m, s in steps:
                if not dec.remaining:
                    break
                out.append(dec.decode(m, s))
            dec.finish()
            intact = all(torch.equal(a, b) for a, b in zip(out, decoded))
        return kind, "ok_intact" if intact else "ok_undetected"
    except BitstreamError:
        return kind, "BitstreamError"
    except Exception as e:  # noqa: BLE001  (the point is to count anything else)
        return kind, f"other:{type(e).__name__}"


def worker(start: int, stop: int, seed: int, entropy: bool, kinds) -> None:
    sys.path.insert(0, ROOT)
    bases = make_bases(seed)
    print("ready", flush=True)
    for case in range(start, stop):
        t = time.perf_counter()
        kind, outcome = run_case(case, seed, bases, entropy, kinds)
        print(case, kind, outcome, f"{(time.perf_counter() - t) * 1e3:.3f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--no-entropy", action="store_true", help="fuzz the container only")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"mutations to draw from (default: all of {','.join(KINDS)})")
    ap.add_argument("--worker", nargs=2, type=int, metavar=("START", "STOP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if not kinds or set(kinds) - set(KINDS):
        ap.error(f"--kinds: one or more of {','.join(KINDS)}")
    if args.worker:
        worker(*args.worker, args.seed, not args.no_entropy, kinds)
        return 0

    t0 = time.time()
    outcomes, by_kind, times = supervise(
        lambda case: [sys.executable, os.path.abspath(__file__), "--worker", str(case), str(args.cases),
                     "--seed", str(args.seed), "--kinds", ",".join(kinds)] + (["--no-entropy"] if args.no_entropy else []),
        args.cases, args.timeout, start_timeout=300)
    print(f"{args.cases} cases in {time.time() - t0:.1f} s (entropy decoding: {not args.no_entropy})")
    report(outcomes, by_kind, times, ("ok_intact", "ok_undetected"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
