"""What K targets cost: K = 1, 4, 8 targets of one image, as a ratio to one target, with the
K backward passes run as a loop or as one vmapped pass (``instrument.gradients.BATCHED_BACKWARD``).

    python bench/bench_targets.py [--device cpu] [--model resnet18] [--size 64] [--ks 1,4,8] [--repeats 3]

The forward pass is shared by all targets either way, so a ratio below K says how much of one
target's cost is its forward pass; the loop/batched columns say whether one vmapped backward
beats K backwards on this device (the rule ``BATCHED_BACKWARD`` follows). Weights are random.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import best_time  # noqa: E402
from xai_core.engine import Engine  # noqa: E402
from xai_core.instrument import gradients  # noqa: E402
from xai_core.methods import explain  # noqa: E402
from xai_core.models import build_random  # noqa: E402

CASES = {"saliency": {}, "guided_backprop": {}, "gradcam": {}, "layercam": {}, "ig": {"steps": 16},
         "smoothgrad": {"samples": 8}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ks", default="1,4,8")
    parser.add_argument("--methods", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    ks = [int(k) for k in args.ks.split(",")]
    model = build_random(args.model, num_classes=max(10, max(ks)), device=device)
    x = torch.randn(3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
    engine = Engine(device)
    print(f"{args.model} (random), one {args.size} px image on {device}, {torch.get_num_threads()} threads; "
          f"time of K targets / time of 1 target" + ("" if device.type == "cuda" else " (CPU, contended machine)"))
    header = " ".join(f"{f'K={k} loop':>10} {f'K={k} batch':>11}" for k in ks if k > 1)
    print(f"{'method':<16} {'1 target s':>10} {header}")
    for name in args.methods.split(","):
        params = CASES.get(name, {})
        configs = [(k, batched) for k in ks for batched in ([False] if k == 1 else [False, True])]
        times = {config: float("inf") for config in configs}
        for round_ in range(1 + args.repeats):  # interleaved rounds: a load change hits every config alike
            for k, batched in configs:
                gradients.BATCHED_BACKWARD[device.type] = batched
                t = best_time(lambda: explain(model, x, name, list(range(k)), params, engine=engine), 1, device,
                              warmup=round_ == 0)
                times[k, batched] = min(times[k, batched], t)
        one = times[1, False]
        cells = " ".join(f"{times[k, False] / one:>10.2f} {times[k, True] / one:>11.2f}" for k in ks if k > 1)
        print(f"{name:<16} {one:>10.3f} {cells}", flush=True)


if __name__ == "__main__":
    main()
