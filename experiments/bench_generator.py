"""Time the StyleGAN2 generator's forward pass (synthesis from W+, as the codec decoder runs it).

    python experiments/bench_generator.py --resolution 256 --channel-base 16384 --channel-max 256 \
        --batch 1 8 --threads 2

Prints one line per batch size (and a JSON line with --json): parameters, wall ms per batch and per
image (median and min of --repeats), and the process CPU time per image (all threads summed), which
is the steadier number on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from stylecodec.gan import build_generator


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--channel-base", type=int, default=16384)
    p.add_argument("--channel-max", type=int, default=256)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per batch size (median reported)")
    p.add_argument("--fused", choices=["auto", "on", "off"], default="auto",
                   help="modulation as one grouped conv (on), per-batch scaling (off) or the official rule")
    p.add_argument("--device", default="cpu")
    p.add_argument("--mapping", action="store_true", help="time G(z) (mapping + synthesis) instead of synthesis(ws)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    G = build_generator(args.resolution, channel_base=args.channel_base, channel_max=args.channel_max)
    G = G.eval().requires_grad_(False).to(args.device)
    n_syn = sum(p.numel() for p in G.synthesis.parameters())
    n_map = sum(p.numel() for p in G.mapping.parameters())
    widths = {r: G.synthesis.channels_dict[r] for r in G.synthesis.block_resolutions}
    print(f"G {args.resolution}px num_ws={G.num_ws} widths={widths}  synthesis {n_syn / 1e6:.2f} M, "
          f"mapping {n_map / 1e6:.2f} M parameters; device={args.device} threads={torch.get_num_threads()} "
          f"({platform.processor() or platform.machine()}), torch {torch.__version__}")
    fused = {"auto": None, "on": True, "off": False}[args.fused]
    for batch in args.batch:
        z = torch.randn(batch, G.z_dim, device=args.device)
        ws = G.mapping(z, None)

        def step():
            with torch.no_grad():
                if args.mapping:
                    G(z, None, noise_mode="const", fused_modconv=fused)
                else:
                    G.synthesis(ws, noise_mode="const", fused_modconv=fused)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()

        step()   # warm-up
        times, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        med = statistics.median(times)
        row = dict(resolution=args.resolution, channel_base=args.channel_base, channel_max=args.channel_max,
                   batch=batch, threads=args.threads, fused=args.fused, device=args.device,
                   params_synthesis=n_syn, params_mapping=n_map, ms_per_batch=round(med * 1e3, 1),
                   ms_per_image=round(med * 1e3 / batch, 1), min_ms_per_batch=round(min(times) * 1e3, 1),
                   cpu_ms_per_image=round(statistics.median(cpu) * 1e3 / batch, 1))
        print(f"  batch {batch:3d}: {row['ms_per_batch']:8.1f} ms/batch  {row['ms_per_image']:7.1f} ms/image "
              f"(median of {args.repeats}, min {row['min_ms_per_batch']} ms; process CPU {row['cpu_ms_per_image']} ms/image)")
        if args.json:
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
