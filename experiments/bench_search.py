"""Identity search speed and size: indexing from .sfc, search over 10^6 entries, bytes per face.

    python experiments/bench_search.py [--model default] [--streams 4000] [--entries 1000000]
                                       [--dims 128,512] [--threads 2] [--out JSON]

1. Indexing throughput (basic layers per second; header + basic layer read from .sfc files, entropy
   decoding + analysis heads, no pixels). Streams: ``--real`` UTKFace held-out faces coded at the
   default setting, and ``--streams`` synthetic ones whose latents are drawn, dimension by
   dimension, from the real faces' latents (same marginals, so the same symbol statistics and
   stream sizes), at the real faces' qualities. Measured: ``Codec.analyze`` one stream at a time
   (the unbatched path: it also predicts the middle and enhanced layers), the batched
   :func:`stylecodec.search.build.index_batch` in one process and in ``--threads`` processes of
   one torch thread each, and ``stylecodec index`` end to end (files, decoding, saves). A profile
   of the batched path says where the time goes.
2. Search latency over ``--entries`` synthetic unit vectors of each of ``--dims`` (128: SFace's
   dimension, what the redesigned identity head regresses; 512: today's head), one probe at a time
   (``IdentityIndex.search``, k = 10), faiss ``IndexFlatIP`` at 1 and ``--threads`` threads and
   numpy (BLAS threads fixed to ``--threads`` at start); median and p95 over ``--queries`` probes.
3. Index size per face: the saved index file / entries (float32 and float16), and its load time.

Writes ``--out`` (default experiments/results/search/bench_search.json) and prints a table.
"""
from __future__ import annotations

import argparse
import os
import sys


def _set_threads_early(argv: list[str]) -> int:
    """BLAS reads its thread count when numpy loads: set it before any import."""
    n = 2
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = int(argv[i + 1])
        elif a.startswith("--threads="):
            n = int(a.split("=", 1)[1])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    return n


_THREADS = _set_threads_early(sys.argv[1:]) if __name__ == "__main__" else 2

import cProfile  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def _real_latents(codec, n: int):
    """(latents [n, d_l] per layer, default-setting qualities) of the last n UTKFace images, or None."""
    import torch

    from stylecodec.batch import find_images
    from stylecodec.paths import shared_dir
    from stylecodec.rate import choose_quality, stream_sizes

    folder = shared_dir() / "data" / "utkface"
    if not folder.is_dir() or n <= 0:
        return None
    names = find_images(folder, val_count=n)
    ys = codec.encode_latents(torch.cat([codec.preprocess(folder / m) for m in names]))
    bpp, basic_bpp = codec.default_budget
    qs = []
    for i in range(len(names)):
        row = [y[i:i + 1] for y in ys]
        q, _ = choose_quality(codec.quality_range, lambda q: stream_sizes(codec.compress_latents(row, q)[0]),
                              codec.resolution, bpp, basic_bpp)
        qs.append(q)
    return ys, np.array(qs)


def make_streams(codec, n_real: int, n_synth: int, seed: int = 0) -> tuple[list[bytes], dict]:
    import torch

    real = _real_latents(codec, n_real)
    rng = np.random.default_rng(seed)
    if real is None:                                  # no data: unit Gaussians at the top quality
        ys_real = [torch.randn(64, d, dtype=torch.float64) for d in codec.model.latent_dims]
        qs = np.array([codec.quality_range[-1]])
        what = "synthetic (N(0,1) latents; ../shared absent)"
    else:
        ys_real, qs = real
        what = f"{n_real} UTKFace held-out faces at the default setting + {n_synth} resampled from their latents"
    streams: list[bytes] = []
    if real is not None:
        for q in np.unique(qs):
            rows = np.flatnonzero(qs == q).tolist()
            streams += codec.compress_latents([y[rows] for y in ys_real], int(q))
    m = ys_real[0].shape[0]
    synth = [torch.stack([y[rng.integers(0, m, n_synth), j] for j in range(y.shape[1])], 1) for y in ys_real]
    syn_q = rng.choice(qs, n_synth)
    for q in np.unique(syn_q):
        rows = np.flatnonzero(syn_q == q).tolist()
        streams += codec.compress_latents([y[rows] for y in synth], int(q))
    from stylecodec.bitstream import basic_prefix

    sizes = [len(basic_prefix(s)) for s in streams]
    return streams, {"what": what, "count": len(streams), "basic_prefix_bytes_mean": float(np.mean(sizes)),
                     "file_bytes_mean": float(np.mean([len(s) for s in streams])),
                     "qualities": {int(q): int((np.array(syn_q) == q).sum()) for q in np.unique(syn_q)}}


def bench_indexing(codec, folder: Path, names: list[str], threads: int, batch: int) -> dict:
    import torch

    from stylecodec.bitstream import read_basic_prefix
    from stylecodec.search.build import _Decoder, build_index, index_batch

    torch.set_num_threads(1)
    paths = [str(folder / n) for n in names]
    out: dict = {}
    # (a) unbatched: Codec.analyze per stream
    k = min(200, len(paths))
    t, c = time.perf_counter(), time.process_time()
    for p in paths[:k]:
        codec.analyze(read_basic_prefix(p))
    out["analyze_one_by_one_per_s"] = k / (time.perf_counter() - t)
    out["analyze_one_by_one_per_cpu_s"] = k / (time.process_time() - c)
    # (b) batched, one process
    batches = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    index_batch(codec, batches[0][:8])                                   # warm
    t, c = time.perf_counter(), time.process_time()
    n_ok = sum(len(index_batch(codec, b)[0]) for b in batches)
    out["batched_1_process_per_s"] = len(paths) / (time.perf_counter() - t)
    out["batched_1_process_per_cpu_s"] = len(paths) / (time.process_time() - c)
    out["decoded_ok"] = n_ok
    # batch size sweep (one process)
    sweep = {}
    for bs in (1, 16, 64, 256, 1024):
        sub = paths[:max(bs, min(len(paths), 2048 if bs > 1 else 200))]
        t = time.perf_counter()
        for i in range(0, len(sub), bs):
            index_batch(codec, sub[i:i + bs])
        sweep[bs] = len(sub) / (time.perf_counter() - t)
    out["batch_sweep_1_process_per_s"] = sweep
    # profile of the batched path
    prof = cProfile.Profile()
    prof.enable()
    for b in batches[:4]:
        index_batch(codec, b)
    prof.disable()
    out["profile"] = _where(prof, sum(len(b) for b in batches[:4]))
    # (c) batched, `threads` processes (spawned, warm)
    if threads > 1:
        dec = _Decoder(codec, threads)
        list(dec.map([batches[0][:8]] * threads))                         # start + warm the workers
        t = time.perf_counter()
        n2 = sum(len(r[0]) for r in dec.map(batches))
        out[f"batched_{threads}_processes_per_s"] = len(paths) / (time.perf_counter() - t)
        dec.close()
        assert n2 == n_ok
    # (d) stylecodec index end to end (one process; files listed, read, decoded, index saved)
    with tempfile.TemporaryDirectory() as tmp:
        t, cpu = time.perf_counter(), time.process_time()
        c = build_index(codec, [folder], Path(tmp) / "i.sfi", batch_size=batch, progress=False)
        out["build_index_1_process_per_s"] = c["added"] / (time.perf_counter() - t)
        out["build_index_1_process_per_cpu_s"] = c["added"] / (time.process_time() - cpu)
        if threads > 1:
            t = time.perf_counter()
            c = build_index(codec, [folder], Path(tmp) / "j.sfi", batch_size=batch, progress=False, workers=threads)
            out[f"build_index_{threads}_processes_incl_startup_per_s"] = c["added"] / (time.perf_counter() - t)
    return out


def _where(prof: cProfile.Profile, n: int) -> dict:
    """Cumulative ms per stream in the parts of the batched path."""
    st = pstats.Stats(prof)
    parts = {"read .sfc prefix (file open + read)": ("bitstream.py", "read_basic_prefix"),
             "container (unpack, CRC)": ("bitstream.py", "unpack"),
             "LSET means/scales (float64, fixed-order sums)": ("lset.py", "params_for_group"),
             "range decoding + re-encoding check + snapping (per stream, per group)": ("gaussian.py", "decode"),
             "analysis heads (MLP, batched)": ("heads.py", "forward")}
    total = sum(v[3] for k, v in st.stats.items() if k[2] == "index_batch")
    out = {"total_ms_per_stream": 1e3 * total / n}
    for label, (file, func) in parts.items():
        cum = sum(v[3] for k, v in st.stats.items() if k[0].endswith(file) and k[2] == func)
        out[label] = 1e3 * cum / n
    return out


def bench_search(entries: int, dim: int, threads: int, queries: int, seed: int = 0) -> dict:
    from stylecodec.search.backend import faiss_available
    from stylecodec.search.index import IdentityIndex

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((entries, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.integers(0, entries, queries)] + 0.3 * rng.standard_normal((queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index = IdentityIndex(dim, 0, "bench", "float32")
    index.add([f"f{i:07d}.sfc" for i in range(entries)], x, source=None)
    del x
    res = {}
    backends = (["faiss"] if faiss_available() else []) + ["numpy"]
    for backend in backends:
        for t in ([1, threads] if backend == "faiss" and threads != 1 else [threads]):
            opt = {"backend": backend, "threads": t if backend == "faiss" else None}
            index._backend = None                        # rebuilt: its build time is reported
            t0 = time.perf_counter()
            index.search(q[0], 10, **opt)
            build = time.perf_counter() - t0
            lat, cpu = [], []
            for i in range(queries):
                t0, c0 = time.perf_counter(), time.process_time()
                index.search(q[i], 10, **opt)
                lat.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            t0 = time.perf_counter()
            index.search(q, 10, **opt)
            batch = (time.perf_counter() - t0) / queries
            res[f"{backend}, {t} thread{'s' if t > 1 else ''}"] = {
                "median_ms": 1e3 * float(np.median(lat)), "p95_ms": 1e3 * float(np.percentile(lat, 95)),
                "cpu_ms_median": 1e3 * float(np.median(cpu)),
                f"batch_of_{queries}_ms_per_probe": 1e3 * batch, "first_call_incl_backend_build_s": build}
    return res


def bench_size(entries: int, dim: int, tmp: Path) -> dict:
    from stylecodec.search.index import IdentityIndex

    rng = np.random.default_rng(1)
    x = rng.standard_normal((entries, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    # names like a UTKFace collection: "utkface/26_1_0_20170116233019345.jpg.chip.jpg.sfc" (48 chars)
    names = [f"utkface/{20 + i % 60}_{i % 2}_{i % 5}_2017{i:013d}.jpg.chip.jpg.sfc" for i in range(entries)]
    out = {"name_bytes_mean": float(np.mean([len(n) for n in names[:1000]]))}
    for dtype in ("float32", "float16"):
        index = IdentityIndex(dim, 0, "bench", dtype)
        index.add(names, x, source="/data/faces")
        path = tmp / f"size-{dtype}.sfi"
        t = time.perf_counter()
        index.save(path)
        save_s = time.perf_counter() - t
        t = time.perf_counter()
        IdentityIndex.load(path)
        load_s = time.perf_counter() - t
        out[dtype] = {"bytes_per_face": path.stat().st_size / entries, "embedding_bytes": dim * (4 if dtype == "float32" else 2),
                      "file_mb": path.stat().st_size / 1e6, "save_s": save_s, "load_s": load_s}
        path.unlink()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--real", type=int, default=64, help="UTKFace held-out faces coded for real (default 64)")
    ap.add_argument("--streams", type=int, default=4000, help="synthetic .sfc streams (default 4000)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--dims", default="128,512")
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2, help="processes for indexing, threads for search (default 2)")
    ap.add_argument("--out", type=Path, default=Path("experiments/results/search/bench_search.json"))
    args = ap.parse_args(argv)

    import torch

    from stylecodec.codec import Codec
    from stylecodec.search.identity import identity_dim

    torch.set_num_threads(1)
    codec = Codec.from_pretrained(args.model)
    load_before = os.getloadavg()
    result = {"model": args.model, "fingerprint": f"0x{codec.fingerprint:04x}", "identity_dim": identity_dim(codec),
              "threads": args.threads, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "loadavg_at_start": load_before, "command": "python experiments/bench_search.py " + " ".join(
                  argv if argv is not None else sys.argv[1:])}
    t0 = time.perf_counter()
    streams, info = make_streams(codec, args.real, args.streams)
    result["streams"] = info | {"make_s": time.perf_counter() - t0}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "sfc"
        folder.mkdir()
        names = [f"s{i:06d}.sfc" for i in range(len(streams))]
        for n, s in zip(names, streams):
            (folder / n).write_bytes(s)
        result["indexing"] = bench_indexing(codec, folder, names, args.threads, args.batch)
        result["search"] = {}
        result["size"] = {}
        for dim in (int(d) for d in args.dims.split(",")):
            result["search"][dim] = bench_search(args.entries, dim, args.threads, args.queries)
            result["size"][dim] = bench_size(args.entries, dim, Path(tmp))
    result["loadavg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    _print(result, args)
    print(f"wrote {args.out}")
    return 0


def _print(r: dict, args) -> None:
    ix, th = r["indexing"], args.threads
    print(f"\nstreams: {r['streams']['what']}; basic layer {r['streams']['basic_prefix_bytes_mean']:.1f} B "
          f"(header + basic), whole file {r['streams']['file_bytes_mean']:.1f} B; load average "
          f"{r['loadavg_at_start'][0]:.1f} on {r['cores']} cores")
    print("\nindexing from .sfc (basic layers per second of wall time; per CPU-second of this process)")
    print(f"  Codec.analyze, one stream at a time          {ix['analyze_one_by_one_per_s']:9.0f}"
          f"  ({ix['analyze_one_by_one_per_cpu_s']:.0f} per CPU-s)")
    print(f"  batched ({args.batch}), 1 process                    {ix['batched_1_process_per_s']:9.0f}"
          f"  ({ix['batched_1_process_per_cpu_s']:.0f} per CPU-s)")
    if f"batched_{th}_processes_per_s" in ix:
        print(f"  batched ({args.batch}), {th} processes                   {ix[f'batched_{th}_processes_per_s']:9.0f}")
    print(f"  stylecodec index end to end, 1 process       {ix['build_index_1_process_per_s']:9.0f}"
          f"  ({ix['build_index_1_process_per_cpu_s']:.0f} per CPU-s)")
    if f"build_index_{th}_processes_incl_startup_per_s" in ix:
        print(f"  stylecodec index, {th} processes (incl. start) {ix[f'build_index_{th}_processes_incl_startup_per_s']:9.0f}")
    print("  batch sweep, 1 process: " + ", ".join(f"{k}: {v:.0f}/s" for k, v in ix["batch_sweep_1_process_per_s"].items()))
    print("  where the time goes (ms per stream, batched, 1 process): " +
          "; ".join(f"{k} {v:.3f}" for k, v in ix["profile"].items()))
    print(f"\nsearch, one probe at a time, k=10, {args.entries:,} entries (ms)")
    for dim, rows in r["search"].items():
        for name, v in rows.items():
            print(f"  {dim:4d}-d  {name:18s} median {v['median_ms']:7.1f}  p95 {v['p95_ms']:7.1f}  "
                  f"CPU {v['cpu_ms_median']:7.1f}  "
                  f"(batch of {args.queries}: {v[f'batch_of_{args.queries}_ms_per_probe']:.1f} per probe)")
    print("\nindex size per face (bytes; names ~%d B)" % next(iter(r["size"].values()))["name_bytes_mean"])
    for dim, v in r["size"].items():
        print(f"  {dim:4d}-d  float32 {v['float32']['bytes_per_face']:7.1f}  float16 {v['float16']['bytes_per_face']:7.1f}"
              f"   (load {v['float32']['load_s']:.2f} s / {v['float16']['load_s']:.2f} s for {args.entries:,})")


if __name__ == "__main__":
    sys.exit(main())
