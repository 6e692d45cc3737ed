"""Fuzz the stream reader (and, by default, the entropy decoder behind it).

Valid 3-layer streams are made with the real coder, then damaged (truncation, bit flips,
overwrites, insertions, appended or random bytes, valid layer cuts). Each case is decoded
in a worker process with a watchdog, so crashes and hangs are counted, not fatal.

    python experiments/fuzz_bitstream.py --cases 10000

The mutation "payload" damages one layer's payload and re-packs the stream with valid CRCs
(what a CRC collision or a deliberate edit looks like), so it tests the entropy decoder's
own checks: complete streams are re-encoded and compared; truncated ones get range checks.

Outcomes: ok_intact (accepted, decodes to the original's layers), ok_undetected (accepted,
decodes to something else), BitstreamError, other:<exception>, crash, timeout.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

from fuzz_supervisor import supervise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = [16, 24, 40]
FINGERPRINT = 0xBEEF
N_BASES = 32
KINDS = ["truncate", "layer_cut", "flip1", "flips", "overwrite", "insert", "append", "random", "payload"]


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
        data = pack(StreamHeader(256, b % 32, FINGERPRINT), enc.finish())
        bases.append((data, steps, decoded))
    return bases


def mutate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    from stylecodec.bitstream import extract, pack, unpack

    kind = rng.choice(KINDS)
    b = bytearray(data)
    if kind == "truncate":
        return kind, data[:rng.randrange(len(data))]
    if kind == "layer_cut":
        n = rng.randint(1, 3)
        if rng.random() < 0.5:
            return kind, extract(data, n)
        _, payloads = unpack(data)
        return kind, data[:len(data) - sum(2 + len(p) for p in payloads[n:])]
    if kind == "payload":
        header, payloads = unpack(data)
        payloads = payloads[:rng.choice([1, 2, 3, 3, 3])]
        k = rng.randrange(len(payloads))
        p = bytearray(payloads[k])
        how = rng.choice(["flip", "overwrite", "cut", "extend", "random"])
        if how == "flip" and p:
            i = rng.randrange(8 * len(p))
            p[i // 8] ^= 1 << (i % 8)
        elif how == "overwrite" and p:
            p[rng.randrange(len(p))] = rng.getrandbits(8)
        elif how == "cut" and p:
            del p[rng.randrange(len(p)):]
        elif how == "extend":
            p += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
        else:
            p = bytearray(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
        payloads[k] = bytes(p)
        packed = pack(type(header)(header.resolution, header.quality, header.fingerprint), payloads)
        return f"payload{len(payloads)}of3", packed
    if kind in ("flip1", "flips"):
        for _ in range(1 if kind == "flip1" else rng.randint(2, 8)):
            i = rng.randrange(8 * len(b))
            b[i // 8] ^= 1 << (i % 8)
    elif kind == "overwrite":
        i = rng.randrange(len(b))
        b[i:i + rng.randint(1, 8)] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
    elif kind == "insert":
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
    elif kind == "append":
        b += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    else:
        b = bytearray(rng.getrandbits(8) for _ in range(rng.randint(0, 120)))
        if rng.random() < 0.7:
            b[:7] = data[:7]
    return kind, bytes(b)


def run_case(case: int, seed: int, bases, entropy: bool) -> tuple[str, str]:
    import torch

    from stylecodec.bitstream import BitstreamError, unpack
    from stylecodec.entropy import gaussian

    rng = random.Random(seed * 1_000_003 + case)
    original, steps, decoded = bases[rng.randrange(len(bases))]
    kind, data = mutate(rng, original)
    try:
        _, payloads = unpack(data, expected_fingerprint=FINGERPRINT)
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


def worker(start: int, stop: int, seed: int, entropy: bool) -> None:
    sys.path.insert(0, ROOT)
    bases = make_bases(seed)
    print("ready", flush=True)
    for case in range(start, stop):
        t = time.perf_counter()
        kind, outcome = run_case(case, seed, bases, entropy)
        print(case, kind, outcome, f"{(time.perf_counter() - t) * 1e3:.3f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--no-entropy", action="store_true", help="fuzz the container only")
    ap.add_argument("--worker", nargs=2, type=int, metavar=("START", "STOP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker, args.seed, not args.no_entropy)
        return 0

    t0 = time.time()
    outcomes, by_kind, times = supervise(
        lambda case: [sys.executable, os.path.abspath(__file__), "--worker", str(case), str(args.cases),
                     "--seed", str(args.seed)] + (["--no-entropy"] if args.no_entropy else []),
        args.cases, args.timeout, start_timeout=300)
    print(f"{args.cases} cases in {time.time() - t0:.1f} s (entropy decoding: {not args.no_entropy})")
    for name in ("ok_intact", "ok_undetected", "BitstreamError", "crash", "timeout"):
        print(f"  {name:15s} {outcomes.pop(name, 0)}")
    for name, n in sorted(outcomes.items()):
        print(f"  {name:15s} {n}")
    print("by mutation:")
    for kind in sorted(by_kind):
        print(f"  {kind:10s} " + ", ".join(f"{k} {v}" for k, v in sorted(by_kind[kind].items())))
    if times:
        times.sort()
        print(f"per case: median {times[len(times) // 2]:.2f} ms, max {times[-1]:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
