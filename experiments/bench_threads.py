"""Torch threads vs speed under the machine's current load: what stylecodec/threads.py's rule rests on.

    python experiments/bench_threads.py [--threads 1,2] [--repeats 5] [--model pretrained/default.pt]

For each thread count, in a fresh process with OMP_NUM_THREADS set: compress + decompress (all layers)
of the sample face ``--repeats`` times after one warm-up; prints the median seconds per face, the
1-minute load average before the run and the CPUs available.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, statistics, sys, time
import torch
sys.path.insert(0, sys.argv[1])
from stylecodec.codec import Codec
codec = Codec.from_pretrained(sys.argv[2])
img, times = sys.argv[3], []
for i in range(int(sys.argv[4]) + 1):
    t = time.perf_counter()
    codec.decompress(codec.compress(img, quality=5))
    times.append(time.perf_counter() - t)
print(json.dumps({"threads": torch.get_num_threads(), "median_s": statistics.median(times[1:])}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default=os.path.join(ROOT, "pretrained", "default.pt"))
    ap.add_argument("--image", default=os.path.join(ROOT, "samples", "astronaut_eileen_collins.png"))
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    from stylecodec.threads import available_cpus, choose_threads

    print(f"CPUs available {available_cpus()}, load average (1 min) {os.getloadavg()[0]:.2f}; "
          f"stylecodec.threads would choose {choose_threads()}")
    for k in (int(t) for t in args.threads.split(",")):
        env = dict(os.environ, OMP_NUM_THREADS=str(k), MKL_NUM_THREADS=str(k))
        out = subprocess.run([sys.executable, "-c", CHILD, ROOT, args.model, args.image, str(args.repeats)],
                             capture_output=True, text=True, env=env, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"  {r['threads']} thread(s): compress + decompress {r['median_s']:.3f} s/face (median of {args.repeats})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
