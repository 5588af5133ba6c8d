"""Evaluations a convergence tolerance saves, against the fixed defaults, for the same accuracy.

For each model setting (the embedded model on a dataset image; ResNet-18/50 with random weights
on a seeded random image, as built and "sharpened": final fc weights × 10, so the softmax is peaky
like a trained model's) and its top class:

- RISE: one progressive run to the reference N (8000; ``--quick``: 1000) stores the sums at every
  doubling round; read off them (exactly what a run would do, the masks being prefix-stable): the
  masks a tolerance 0.01 run uses (``--quick``: the reference is 800 and sharpened ResNet-18 only) (``rise.stopping_count``), its correlation r with the reference
  map, and the smallest round count whose map reaches r ≥ 0.99 (the oracle). Fixed default: the
  paper's N = 8000 (ResNet-50) / 4000 (others).
- SmoothGrad (over saliency): the reference is 500 samples (``--quick``: 100); the tolerance run
  (0.01) reports samples used and its r; Captum's NoiseTunnel default nt_samples = 5 and ours (25)
  are shown with the r they reach.
- IG: the relative completeness gap 1 % (tolerance 0.01) with at most 512 steps, trapezoid (nested:
  points evaluated = steps used) and Gauss–Legendre (restarts: points = sum of the rounds); Captum's
  default n_steps = 50 (Gauss–Legendre) with the gap it reaches.

Evaluations are model forward passes (RISE) or forward+backward passes (SmoothGrad, IG) per
image. Run: ``python bench/bench_convergence.py [--quick] [--device cuda]``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xai_core import dataset  # noqa: E402
from xai_core.engine import Engine  # noqa: E402
from xai_core.methods import explain  # noqa: E402
from xai_core.methods.convergence import doubling_rounds, map_correlation  # noqa: E402
from xai_core.methods.rise import SEED_CHUNK, rise_progressive, saliency_from_sums, stopping_count  # noqa: E402
from xai_core.models import build_random, load_model  # noqa: E402
from xai_core.zoo.checkpoints import final_linear  # noqa: E402

TOLERANCE = 0.01


def settings(quick: bool, device: str, size: int):
    """(label, model, image) per model setting."""
    embedded = load_model("embedded", device=device)
    image = dataset.normalize(np.asarray(dataset.make_sample(7, 3).image)[None], embedded.mean, embedded.std)[0]
    yield "embedded (trained)", embedded, image
    noise = torch.randn(3, size, size, generator=torch.Generator().manual_seed(0))
    for name in ("resnet18",) if quick else ("resnet18", "resnet50"):
        for sharp in (True,) if quick else (False, True):
            model = build_random(name, num_classes=1000, device=device)
            if sharp:
                with torch.no_grad():
                    final_linear(model.module).weight.mul_(10)
            yield f"{name} random{' ×10 fc' if sharp else ''}", model, noise


def r(a, b) -> float:
    return float(map_correlation(torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))).min())


def bench_rise(model, x, target, n_ref, engine):
    stored = {}
    for step in rise_progressive(model, x.to(model.device), [target], masks=n_ref, cell=7, p=0.5, shape="binary",
                                 fill="black", seed=0, engine=engine, step=SEED_CHUNK):
        stored[step.n_done] = step.sums.cpu().numpy()
    reference = saliency_from_sums(stored[n_ref], n_ref, 0.5)
    used = stopping_count(stored.__getitem__, n_ref, 0.5, TOLERANCE)
    oracle = next(n for n in doubling_rounds(SEED_CHUNK, n_ref)
                  if r(saliency_from_sums(stored[n], n, 0.5), reference) >= 0.99)
    return used, r(saliency_from_sums(stored[used], used, 0.5), reference), oracle


def bench_smoothgrad(model, x, target, n_ref, engine):
    def run(samples, tolerance=0.0):
        return explain(model, x, "smoothgrad", [target], {"samples": samples, "tolerance": tolerance},
                       engine=engine)[0]
    reference = run(n_ref).map
    stopped = run(n_ref, TOLERANCE)
    return (int(stopped.extras["samples_used"]), r(stopped.map, reference),
            {n: r(run(n).map, reference) for n in (5, 25)})


def bench_ig(model, x, target, engine):
    rows = {}
    for rule in ("riemann_trapezoid", "gausslegendre"):
        e = explain(model, x, "ig", [target], {"steps": 512, "rule": rule, "tolerance": TOLERANCE}, engine=engine)[0]
        used, rounds = int(e.extras["steps_used"]), e.extras["round_steps"]
        points = used if rule == "riemann_trapezoid" else sum(rounds[:rounds.index(used) + 1])
        rows[rule] = (used, points, float(e.extras["round_gaps"][rounds.index(used)]))
    fixed = explain(model, x, "ig", [target], {"steps": 50}, engine=engine)[0]
    gap = fixed.extras["completeness_gap"] / abs(fixed.extras["f_input"] - fixed.extras["f_baseline"])
    return rows, float(gap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller references, embedded and sharpened ResNet-18 only (< 3 min)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=64, help="side of the random image for the ResNets")
    args = parser.parse_args()
    n_rise, n_sg = (800, 100) if args.quick else (8000, 500)
    engine = Engine(args.device)
    print(f"tolerance {TOLERANCE}; RISE reference N = {n_rise}, SmoothGrad reference {n_sg} samples; "
          f"device {args.device}; evaluations per image")
    print("| model | RISE masks (tol) | r | oracle | fixed N | ratio | SG samples (tol) | r | r@5 | r@25 "
          "| IG trapz steps | GL steps (points) | gap | Captum 50 GL gap | ratio vs 50 |")
    print("|" + "---|" * 15)
    for label, model, x in settings(args.quick, args.device, args.size):
        with torch.no_grad():
            target = int(model.module(x[None].to(model.device)).argmax())
        fixed_rise = 8000 if "resnet50" in label else 4000
        used, r_used, oracle = bench_rise(model, x, target, n_rise, engine)
        sg_used, sg_r, sg_fixed = bench_smoothgrad(model, x, target, n_sg, engine)
        ig, gap50 = bench_ig(model, x, target, engine)
        best_points = min(points for _, points, _ in ig.values())
        # A run that used the whole reference did not converge: no saving can be claimed for it.
        rise_ratio = f"{fixed_rise / used:.1f}×" if used < n_rise else "not converged"
        print(f"| {label} | {used} | {r_used:.3f} | {oracle} | {fixed_rise} | {rise_ratio} "
              f"| {sg_used} | {sg_r:.3f} | {sg_fixed[5]:.3f} | {sg_fixed[25]:.3f} "
              f"| {ig['riemann_trapezoid'][0]} | {ig['gausslegendre'][0]} ({ig['gausslegendre'][1]}) "
              f"| {max(g for *_, g in ig.values()):.4f} | {gap50:.4f} | {50 / best_points:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
