"""What fuzz_bitstream.py and fuzz_codec.py share: the damage done to valid streams (:func:`mutate`)
and the watched worker process that decodes them (:func:`supervise`).

The worker prints ``ready`` once set up, then one line ``case KIND OUTCOME MS`` per case.
A silent worker (past ``timeout`` s) counts as a timeout on the current case and a worker
that exits mid-run as a crash; either way a fresh worker continues with the next case.

Mutations (``KINDS``) of a valid stream: truncate (anywhere), layer_cut (``extract`` or a physical
cut after a layer: valid), flip1 / flips / overwrite / insert / append / random (anywhere in the
stream), layer (random single-layer damage: 1-4 payload bytes of one layer changed, nothing else:
what the per-layer CRC is for), payload (one layer's payload damaged and re-packed with valid
CRCs: what a CRC collision looks like, left to the entropy decoder's own checks) and header (a
field re-packed with valid CRCs: another quality, resolution or fingerprint byte).
"""
from __future__ import annotations

import collections
import dataclasses
import random
import selectors
import subprocess
from typing import Callable

KINDS = ["truncate", "layer_cut", "flip1", "flips", "overwrite", "insert", "append", "random", "layer", "payload",
         "header"]


def _rand(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def _records(data: bytes) -> list[tuple[int, int]]:
    """(start, payload start, end) of each layer record of a valid stream."""
    from stylecodec.bitstream import describe

    d, out = describe(data), []
    pos = d["header_bytes"]
    for layer in d["layers"]:
        end = pos + layer["total_bytes"]
        out.append((pos, end - layer["payload_bytes"], end))
        pos = end
    return out


def mutate(rng: random.Random, data: bytes, key, n_qualities: int, kinds=KINDS) -> tuple[str, bytes]:
    """(kind, damaged stream) from a valid 3-layer stream ``data`` of the model with ``key``; the
    kind is drawn from ``kinds``."""
    from stylecodec.bitstream import ModelKey, StreamHeader, extract, pack, unpack

    kind = rng.choice(kinds)
    b = bytearray(data)
    header, payloads = unpack(data)
    records = _records(data)
    if kind == "truncate":
        return kind, data[:rng.randrange(len(data))]
    if kind == "layer_cut":
        n = rng.randint(1, 3)
        return kind, extract(data, n) if rng.random() < 0.5 else data[:records[n - 1][2]]
    if kind == "layer":
        k = rng.randrange(len(records))
        _, lo, hi = records[k]
        if hi == lo:                                   # an empty payload: its CRC byte
            lo -= 1
        for i in rng.sample(range(lo, hi), min(rng.randint(1, 4), hi - lo)):
            b[i] ^= rng.randint(1, 255)
        return f"layer{k}", bytes(b)
    if kind == "header":
        field = rng.choice(["quality", "resolution", "fingerprint"])
        q, r, k = header.quality, header.resolution, key
        if field == "quality":
            q = rng.choice([rng.randrange(n_qualities), rng.randrange(n_qualities, 8) if n_qualities < 8 else 0])
        elif field == "resolution":
            r = 1 << rng.randint(5, 12)
        else:
            k = ModelKey(bytes([key.tag ^ rng.randint(1, 255)]) + key.digest[1:])
        return f"header_{field}", pack(StreamHeader(r, q), payloads, k)
    if kind == "payload":
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
            p += _rand(rng, rng.randint(1, 8))
        else:
            p = bytearray(_rand(rng, rng.randint(0, 60)))
        payloads[k] = bytes(p)
        return f"payload{len(payloads)}of3", pack(dataclasses.replace(header, n_layers=None), payloads, key)
    if kind in ("flip1", "flips"):
        for _ in range(1 if kind == "flip1" else rng.randint(2, 8)):
            i = rng.randrange(8 * len(b))
            b[i // 8] ^= 1 << (i % 8)
    elif kind == "overwrite":
        i = rng.randrange(len(b))
        b[i:i + rng.randint(1, 8)] = _rand(rng, rng.randint(1, 8))
    elif kind == "insert":
        i = rng.randrange(len(b) + 1)
        b[i:i] = _rand(rng, rng.randint(1, 8))
    elif kind == "append":
        b += _rand(rng, rng.randint(1, 64))
    else:
        b = bytearray(_rand(rng, rng.randint(0, 120)))
        if rng.random() < 0.7:
            b[:3] = data[:3]
    return kind, bytes(b)


def report(outcomes: collections.Counter, by_kind: dict, times: list[float], ok_names: tuple[str, ...]) -> None:
    """Print the outcome counts, the counts per mutation and the detection rate of random
    single-layer damage (kind ``layer*``: rejected / cases)."""
    for name in ok_names + ("BitstreamError", "crash", "timeout"):
        print(f"  {name:15s} {outcomes.pop(name, 0)}")
    for name, n in sorted(outcomes.items()):
        print(f"  {name:15s} {n}")
    print("by mutation:")
    for kind in sorted(by_kind):
        print(f"  {kind:18s} " + ", ".join(f"{k} {v}" for k, v in sorted(by_kind[kind].items())))
    for prefix, what in (("layer", "random single-layer damage (1-4 payload bytes, CRCs as they were)"),
                         ("payload", "one payload damaged, CRCs recomputed (the decoder's own checks)")):
        rows = [c for k, c in by_kind.items() if k.startswith(prefix) and k[len(prefix)].isdigit()]
        total = sum(sum(c.values()) for c in rows)
        caught = sum(c["BitstreamError"] for c in rows)
        intact = sum(c["ok_intact"] for c in rows)
        if total:
            print(f"{what}: {total} cases, rejected {caught} ({100.0 * caught / total:.2f} %), accepted and "
                  f"decoded as the original {intact} (damage outside the layers decoded, or none), accepted and "
                  f"changed {total - caught - intact}")
    if times:
        times.sort()
        print(f"per case: median {times[len(times) // 2]:.2f} ms, max {times[-1]:.2f} ms")


def supervise(worker_cmd: Callable[[int], list[str]], cases: int, timeout: float,
              start_timeout: float = 600) -> tuple[collections.Counter, dict, list[float]]:
    """Returns (outcome counts, {kind: outcome counts}, per-case milliseconds)."""
    outcomes: collections.Counter = collections.Counter()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    times: list[float] = []
    case = 0
    while case < cases:
        proc = subprocess.Popen(worker_cmd(case), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, bufsize=1)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = False
        while case < cases:
            if not sel.select(timeout=timeout if ready else start_timeout):
                outcomes["timeout"] += 1
                by_kind["?"]["timeout"] += 1
                case += 1
                break
            line = proc.stdout.readline()
            if not line:                              # the worker died: a crash on this case
                outcomes["crash"] += 1
                by_kind["?"]["crash"] += 1
                case += 1
                break
            if line.startswith("ready"):
                ready = True
                continue
            _, kind, outcome, ms = line.split()
            outcomes[outcome] += 1
            by_kind[kind][outcome] += 1
            times.append(float(ms))
            case += 1
        proc.kill()
        proc.wait()
    return outcomes, by_kind, times
