"""Integrated Gradients (Sundararajan et al. 2017) with several baselines and quadrature rules.

IG_i = (x_i − x'_i) · ∫₀¹ ∂F(x' + β(x − x'))/∂x_i dβ, the integral approximated by a
quadrature rule over ``steps`` points of the straight path. All path points of all baselines
(and, for a batch of images, of every image) go through the model in engine batches; every
target reuses the same forward pass (``instrument.gradients``). Baselines are named
replacements (``xai_core.replacements``: black, grey = the dataset mean, blur, noise...). The
computation is kept in fp32 (precision section ``path_integral``) so that completeness, Σ IG = F(x) − F(x'), holds up
to the quadrature error — the gap is returned per target.

``integrated_gradients`` works on any ``nn.Module`` (RIG runs it on its support networks);
``path_integral`` is its batched form; the registered method ``ig`` wraps them for a
``LoadedModel`` and is composable with the noise tunnel (SmoothGrad of IG).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..engine import Engine, Progress
from ..errors import ParameterError
from ..instrument.gradients import Targets, pick_scores, target_gradients
from ..replacements import HELP as REPLACEMENT_HELP
from ..replacements import REPLACEMENTS, replacement_image
from .base import Method, MethodOutput, Param, sum_over_channels

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
REDUCTIONS = ("sum", "abs_sum", "positive")
STEPS = Param(int, 32, 2, 1024, widget="log_slider", help="points on the path from the baseline to the image")
"""The bound on path points for every caller (the method, RIG): Gauss–Legendre nodes cost steps² memory."""


def quadrature(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Path positions β in [0, 1] and their weights (which sum to 1) for ``rule``; Captum's
    positions and weights, except for the trapezoid weights (see below)."""
    steps = STEPS.parse("steps", steps)
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (torch.tensor(0.5 * (1 + nodes), dtype=torch.float64),
                torch.tensor(0.5 * weights, dtype=torch.float64))
    if rule not in RULES:
        raise ParameterError(f"Unknown integration rule '{rule}'; choose one of {', '.join(RULES)}.")
    n = steps
    first, last = {"riemann_left": (0, 1 - 1 / n), "riemann_right": (1 / n, 1),
                   "riemann_middle": (1 / (2 * n), 1 - 1 / (2 * n)), "riemann_trapezoid": (0, 1)}[rule]
    positions = torch.linspace(first, last, n).double()
    weights = torch.full((n,), 1 / n, dtype=torch.float64)
    if rule == "riemann_trapezoid":
        # The true trapezoid rule: nodes 1/(n−1) apart, so weights 1/(n−1), halved at the ends.
        # Captum weights these nodes 1/n, so its sum is (1 − 1/n)·(F(x) − F(x')): ours = Captum × n/(n−1).
        weights = torch.full((n,), 1 / (n - 1), dtype=torch.float64)
        weights[0] /= 2
        weights[-1] /= 2
    return positions, weights


@dataclass
class IGResult:
    attributions: torch.Tensor   # T×C×H×W (mean over baselines); T×B×C×H×W from ``path_integral``
    f_input: torch.Tensor        # T (or T×B): F_t(x)
    f_baseline: torch.Tensor     # T (or T×B): F_t(x'), mean over baselines

    @property
    def completeness_gap(self) -> torch.Tensor:
        """|Σ IG − (F(x) − F(x'))| per target (and image)."""
        return (self.attributions.flatten(-3).sum(-1) - (self.f_input - self.f_baseline)).abs()


def path_integral(module: nn.Module, xs: torch.Tensor, baselines: torch.Tensor, targets: Targets, *,
                  steps: int, rule: str, engine: Engine, progress: Progress | None = None,
                  message: str = "Integrated Gradients") -> IGResult:
    """IG of ``module``'s outputs ``targets`` for each image of ``xs`` (B×C×H×W), averaged over that
    image's ``baselines`` (B×D×C×H×W); attributions T×B×C×H×W. ``targets`` are the same classes
    for every image (a list) or each image's own (a B×T tensor).

    The B·D·steps path points are the engine's items: one forward pass per batch serves every
    target, then one backward pass per target through the retained graph (``autograd.grad`` only).
    Measured on CPU (``bench/bench_ig_rig.py``), the batched vector-Jacobian product
    (``is_grads_batched``) is no faster than this loop, which holds one input gradient at a time.
    """
    xs = xs.detach().float()
    baselines = baselines.detach().float()
    n_images, n_base = baselines.shape[:2]
    rows = targets.to(xs.device) if isinstance(targets, torch.Tensor) else \
        torch.as_tensor(list(targets), device=xs.device).expand(n_images, -1)   # B×T
    positions, weights = quadrature(rule, steps)
    positions = positions.to(xs.device, torch.float32)
    weights = weights.to(xs.device, torch.float32)
    deltas = xs.unsqueeze(1) - baselines                      # B×D×C×H×W
    flat_base, flat_delta = baselines.flatten(0, 1), deltas.flatten(0, 1)

    # Accumulated in place, one index_add per batch: a fresh B-image tensor per batch would cost
    # more than the batch itself for large B.
    total = torch.zeros(rows.shape[1], n_images, *xs.shape[1:], device=xs.device)

    def batch(start: int, stop: int) -> None:
        item = torch.arange(start, stop, device=xs.device)
        pair, step = item // steps, item % steps           # pair = image · D + draw
        beta = positions[step].view(-1, 1, 1, 1)
        with torch.enable_grad():
            points = (flat_base[pair] + beta * flat_delta[pair]).requires_grad_(True)
            grads = target_gradients(module(points).float(), rows[pair // n_base], points)  # T×batch×C×H×W
        weighted = grads * (weights[step].view(-1, 1, 1, 1) * flat_delta[pair])
        total.index_add_(1, pair // n_base, weighted)

    item_bytes = 4 * xs[0].numel() * 64  # activations kept for the backward dominate; a rough guess for CUDA
    engine.map(batch, n_images * n_base * steps, section="path_integral",
                           key=f"ig:{type(module).__name__}:{tuple(xs.shape[1:])}", item_bytes=item_bytes,
                           progress=progress, message=message)
    with torch.no_grad(), engine.precision("path_integral"):
        scores = module(torch.cat([xs, flat_base])).float()
    ends = pick_scores(scores, torch.cat([rows, rows.repeat_interleave(n_base, 0)])).T      # T×(B + B·D)
    f_baseline = ends[:, n_images:].reshape(rows.shape[1], n_images, n_base).mean(-1)
    return IGResult(attributions=total / n_base, f_input=ends[:, :n_images], f_baseline=f_baseline)


def integrated_gradients(module: nn.Module, x: torch.Tensor, baselines: torch.Tensor, targets: list[int], *,
                         steps: int, rule: str, engine: Engine, progress: Progress | None = None,
                         message: str = "Integrated Gradients") -> IGResult:
    """IG of ``module``'s outputs ``targets`` at ``x`` (C×H×W), averaged over ``baselines`` (D×C×H×W):
    ``path_integral`` for one image, attributions T×C×H×W."""
    result = path_integral(module, x.unsqueeze(0), baselines.unsqueeze(0), targets, steps=steps, rule=rule,
                           engine=engine, progress=progress, message=message)
    return IGResult(result.attributions[:, 0], result.f_input[:, 0], result.f_baseline[:, 0])


def reduce_channels(attributions: torch.Tensor, how: str) -> torch.Tensor:
    """…×C×H×W attributions → …×H×W map: channel sum, its absolute value, or its positive part."""
    summed = attributions.sum(-3)
    if how == "sum":
        return summed
    if how == "abs_sum":
        return summed.abs()
    if how == "positive":
        return summed.clamp(min=0)
    raise ParameterError(f"Unknown reduction '{how}'; choose one of {', '.join(REDUCTIONS)}.")


def ig_baselines(model, xs: torch.Tensor, baseline: str, *, noise_draws: int, seed: int,
                 constant: float) -> torch.Tensor:
    """B×D×C×H×W baselines for the images ``xs`` (B×C×H×W): D = ``noise_draws`` for noise, else 1."""
    draws = noise_draws if baseline == "noise" else 1
    images = [replacement_image(model, x, baseline, value=constant, seed=seed, draws=draws) for x in xs]
    return torch.stack([image.reshape(draws, *x.shape) for image, x in zip(images, xs)])


def _ig_result(model, xs, targets, *, engine, progress=None, steps, baseline, rule, noise_draws, seed,
               constant) -> IGResult:
    baselines = ig_baselines(model, xs, baseline, noise_draws=noise_draws, seed=seed, constant=constant)
    return path_integral(model.module, xs, baselines, targets, steps=steps, rule=rule, engine=engine,
                         progress=progress)


def ig_attribution(model, xs: torch.Tensor, targets: Targets, *, engine: Engine, steps: int, baseline: str,
                   rule: str, noise_draws: int, seed: int, constant: float, reduce: str = "sum") -> torch.Tensor:
    """IG attributions T×B×C×H×W for a batch of images (the noise tunnel's view of ``ig``).

    ``reduce`` shapes only the ``ig`` method's own map; a composed map is the channel sum.
    """
    return _ig_result(model, xs, targets, engine=engine, steps=steps, baseline=baseline, rule=rule,
                      noise_draws=noise_draws, seed=seed, constant=constant).attributions


def _ig_batch(model, xs, targets, *, engine, progress=None, reduce, **params):
    """IG of every image of ``xs`` for its own targets (B×T): all path points of all images in
    engine batches together."""
    result = _ig_result(model, xs, targets, engine=engine, progress=progress, **params)
    attributions = result.attributions.transpose(0, 1)                       # B×T×C×H×W
    return MethodOutput(maps=reduce_channels(attributions, reduce), attributions=attributions,
                        extras={"per_target_completeness_gap": result.completeness_gap.T,
                                "per_target_f_input": result.f_input.T,
                                "per_target_f_baseline": result.f_baseline.T,
                                "path_points": params["steps"] * (params["noise_draws"]
                                                                  if params["baseline"] == "noise" else 1)})


def _ig(model, x, targets, *, engine, progress=None, **params):
    out = _ig_batch(model, x.unsqueeze(0), torch.as_tensor([list(targets)], device=x.device), engine=engine,
                    progress=progress, **params)
    return MethodOutput(maps=out.maps[0], attributions=out.attributions[0],
                        extras={k: v[0] if k.startswith("per_target_") else v for k, v in out.extras.items()})


IG = Method(
    "ig", "Integrated Gradients", "path", _ig,
    params={
        "steps": STEPS,
        "baseline": Param(str, "black", choices=REPLACEMENTS, help="the path's start: " + REPLACEMENT_HELP),
        "constant": Param(float, 0.5, 0.0, 1.0, step=0.05, help="grey level of the baseline 'constant'"),
        "rule": Param(str, "gausslegendre", choices=RULES, help="quadrature rule (Captum's names)"),
        "reduce": Param(str, "sum", choices=REDUCTIONS, widget="radio", help="channel reduction for the 2-D map"),
        "noise_draws": Param(int, 4, 1, 64, help="noise baselines averaged (baseline = noise only)"),
        "seed": Param(int, 0, 0, 2**31 - 1, widget="number", help="seed of the noise baselines"),
    },
    attribute=ig_attribution, to_map=sum_over_channels, batch_fn=_ig_batch,
    reference="Captum IntegratedGradients",
    description="Path integral of the gradient from a baseline to the image (Sundararajan et al. 2017); "
                "Σ attributions = F(x) − F(baseline) up to the quadrature error (the completeness gap).")
