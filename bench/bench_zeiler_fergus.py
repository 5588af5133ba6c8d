"""Occlusion and inversion timings, measured in the same run on the same device.

    python bench/bench_zeiler_fergus.py [--device cpu] [--model resnet18] [--size 224] [--window 32]
                                        [--stride 16] [--targets 4] [--steps 10]

- occlusion: ours (all positions batched by the engine) against the floor (a batched forward of
  as many images) and Captum's ``Occlusion`` with ``perturbations_per_eval`` 1 and 32;
- inversion: T classes as one batch against T separate runs of the same steps.
Weights are random (timing only); best of ``--repeats`` rounds.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xai_core.engine import Engine  # noqa: E402
from xai_core.inversion import InversionSettings, invert  # noqa: E402
from xai_core.methods.occlusion import occluder_starts, scan  # noqa: E402
from xai_core.models import build_random  # noqa: E402
from timing import best_time  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--targets", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    model = build_random(args.model, num_classes=1000, device=device)
    model = dataclasses.replace(model, input_size=args.size, resize_size=args.size)
    engine = Engine(device)
    x = torch.randn(3, args.size, args.size, device=device)
    n = len(occluder_starts(args.size, args.window, args.stride)) ** 2
    print(f"{args.model} {args.size}px on {device}: {n} occluder positions, engine batch "
          f"{engine.initial_batch(n, 'bench', None)}")

    @torch.no_grad()
    def floor() -> None:
        engine.map(lambda a, b: model.module(x.expand(b - a, -1, -1, -1)).float().softmax(-1), n, section="score_difference")

    ours = best_time(lambda: scan(model, x, [1], window=args.window, stride=args.stride, fill="grey", engine=engine),
                     args.repeats, device, warmup=False)
    base = best_time(floor, args.repeats, device, warmup=False)
    print(f"occlusion  floor {base:7.3f}s  ours {ours:7.3f}s  ratio {ours / base:5.2f}")
    try:
        from captum.attr import Occlusion
    except ImportError:
        print("captum not installed: reference skipped")
    else:
        occlusion = Occlusion(lambda batch: model.module(batch).softmax(-1))
        for per_eval in (1, 32):
            ref = best_time(lambda: occlusion.attribute(
                x.unsqueeze(0), sliding_window_shapes=(3, args.window, args.window),
                strides=(3, args.stride, args.stride), baselines=0.0, target=1, perturbations_per_eval=per_eval),
                1, device, warmup=False)
            print(f"captum perturbations_per_eval={per_eval:<3d} {ref:7.3f}s  ours is {ref / ours:5.2f}× faster")

    settings = InversionSettings(steps=args.steps, frame_every=0)
    targets = list(range(args.targets))
    together = best_time(lambda: invert(model, targets, settings, engine=engine), args.repeats, device, warmup=False)
    separate = best_time(lambda: [invert(model, [t], settings, engine=engine) for t in targets], args.repeats, device, warmup=False)
    print(f"inversion  {args.targets} classes × {args.steps} steps: one batch {together:7.3f}s, "
          f"separate runs {separate:7.3f}s, ratio {separate / together:5.2f}")


if __name__ == "__main__":
    main()
