"""RISE against the model's pure batched forward passes, and its peak memory against the
authors' reference approach (all N masked images in memory at once).

    python bench/bench_rise.py [--device cpu] [--configs resnet18:500,embedded:4000]

Each configuration runs in a fresh process, so its peak resident memory (or, on CUDA, the
peak allocated device memory) belongs to it alone. In the same process and with the same
batch size, it times N forward passes of the unmasked image (the floor: RISE needs exactly
these N passes) and then RISE with N masks and two targets; the ratio is the overhead of
drawing the masks, blending and accumulating. Weights are random (timing only).
The reference memory is analytic: N × 3 × H × W float32 masked images plus the N × H × W masks.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xai_core.engine import Engine  # noqa: E402
from xai_core.methods import explain  # noqa: E402
from xai_core.models import build_random  # noqa: E402

MB = 2**20


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(arch: str, n: int, device: torch.device) -> dict:
    model = build_random(arch, device=device)
    side = model.input_size
    x = torch.randn(3, side, side, device=device)
    engine = Engine(device)
    key = f"rise:{model.name}:{side}x{side}"  # RISE's batch-size key: both runs share the batch size

    def forward_only():
        def batch(start, stop):
            with torch.no_grad():
                model.module(x.expand(stop - start, -1, -1, -1)).float().softmax(-1)
        engine.map(batch, n, section="masked_forward", key=key)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def rise():
        explain(model, x, "rise", [0, 1], {"masks": n}, engine=engine)

    explain(model, x, "rise", [0, 1], {"masks": 50}, engine=engine)  # warm-up, learns the batch size
    baseline = peak_bytes(device)
    start = time.perf_counter()
    forward_only()
    t_forward = time.perf_counter() - start
    after_forward = peak_bytes(device)
    start = time.perf_counter()
    rise()
    t_rise = time.perf_counter() - start
    after_rise = peak_bytes(device)
    return {"arch": arch, "side": side, "n": n, "batch": engine.initial_batch(n, key, None),
            "t_forward": t_forward, "t_rise": t_rise,
            "peak_forward": after_forward - baseline, "peak_rise": after_rise - baseline,
            "reference": n * 4 * side * side * 4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", default="resnet18:500,embedded:4000", help="arch:N,...")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # arch:N, run in a child process
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.one:
        arch, n = args.one.split(":")
        print(json.dumps(measure(arch, int(n), device)))
        return
    rows = []
    for config in args.configs.split(","):
        out = subprocess.run([sys.executable, __file__, "--device", args.device, "--one", config],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    memory = "peak device memory" if device.type == "cuda" else "peak RSS"
    print(f"RISE on {device} ({torch.get_num_threads()} threads), two targets, binary masks s=7, "
          f"{memory} above the warmed-up model")
    header = (f"{'model':<10}{'px':>5}{'N':>6}{'batch':>6}{'forward s':>11}{'RISE s':>9}{'ratio':>7}"
              f"{'fwd MB':>8}{'RISE MB':>9}{'all-at-once MB':>16}{'saved':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        rise_mb = max(r["peak_rise"], 1)
        print(f"{r['arch']:<10}{r['side']:>5}{r['n']:>6}{r['batch']:>6}{r['t_forward']:>11.2f}{r['t_rise']:>9.2f}"
              f"{r['t_rise'] / r['t_forward']:>7.2f}{r['peak_forward'] / MB:>8.0f}{r['peak_rise'] / MB:>9.0f}"
              f"{r['reference'] / MB:>16.0f}{r['reference'] / rise_mb:>7.0f}×")


if __name__ == "__main__":
    main()
