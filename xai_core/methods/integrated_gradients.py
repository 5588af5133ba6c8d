"""Integrated Gradients (Sundararajan et al. 2017) with several baselines and quadrature rules.

IG_i = (x_i − x'_i) · ∫₀¹ ∂F(x' + β(x − x'))/∂x_i dβ, the integral approximated by a
quadrature rule over ``steps`` points of the straight path. All path points of all baselines
go through the model in engine batches; every target reuses the same forward pass. The
computation is kept in fp32 (autocast off) so that completeness, Σ IG = F(x) − F(x'), holds up
to the quadrature error — the gap is returned per target.

``integrated_gradients`` works on any ``nn.Module`` (RIG runs it on its support networks);
the registered method ``ig`` wraps it for a ``LoadedModel``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..blur import gaussian_blur
from ..engine import Engine, Progress
from ..errors import ParameterError
from .base import Method, MethodOutput, Param

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
BASELINES = ("black", "mean", "blur", "noise", "white")
REDUCTIONS = ("sum", "abs_sum", "positive")


def quadrature(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Path positions β in [0, 1] and their weights (which sum to 1) for ``rule``; Captum's
    positions and weights, except for the trapezoid weights (see below)."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (torch.tensor(0.5 * (1 + nodes), dtype=torch.float64),
                torch.tensor(0.5 * weights, dtype=torch.float64))
    if rule not in RULES:
        raise ParameterError(f"Unknown integration rule '{rule}'; choose one of {', '.join(RULES)}.")
    if steps < 2:
        raise ParameterError("Riemann rules need at least 2 steps.")
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


def make_baselines(x: torch.Tensor, kind: str, *, black: torch.Tensor, white: torch.Tensor,
                   to_normalized, noise_draws: int = 1, seed: int = 0) -> torch.Tensor:
    """The baseline images (B×C×H×W, normalised like ``x``); B = ``noise_draws`` for noise, else 1.

    ``black``/``white`` are the normalised constant colours (3×1×1); ``to_normalized`` maps
    a [0, 1] pixel tensor to the model's normalisation. "mean" is the dataset mean, i.e. the
    normalised zero image; "blur" is a Gaussian blur of ``x`` with σ = side / 16.
    """
    if kind == "black":
        return black.expand_as(x).unsqueeze(0).clone()
    if kind == "white":
        return white.expand_as(x).unsqueeze(0).clone()
    if kind == "mean":
        return torch.zeros_like(x).unsqueeze(0)
    if kind == "blur":
        return gaussian_blur(x.unsqueeze(0), max(1.0, min(x.shape[-2:]) / 16))
    if kind == "noise":
        generator = torch.Generator().manual_seed(seed)
        pixels = torch.rand((noise_draws, *x.shape), generator=generator)
        return to_normalized(pixels).to(x.device, x.dtype)
    raise ParameterError(f"Unknown baseline '{kind}'; choose one of {', '.join(BASELINES)}.")


@dataclass
class IGResult:
    attributions: torch.Tensor   # T×C×H×W (mean over baselines)
    f_input: torch.Tensor        # T: F_t(x)
    f_baseline: torch.Tensor     # T: F_t(x'), mean over baselines

    @property
    def completeness_gap(self) -> torch.Tensor:
        """|Σ IG − (F(x) − F(x'))| per target."""
        return (self.attributions.flatten(1).sum(1) - (self.f_input - self.f_baseline)).abs()


def integrated_gradients(module: nn.Module, x: torch.Tensor, baselines: torch.Tensor, targets: list[int], *,
                         steps: int, rule: str, engine: Engine, progress: Progress | None = None,
                         message: str = "Integrated Gradients") -> IGResult:
    """IG of ``module``'s outputs ``targets`` at ``x`` (C×H×W), averaged over ``baselines`` (B×C×H×W).

    One forward pass per batch of path points serves every target; each target then gets one
    backward pass through the retained graph (``autograd.grad`` — no ``.grad`` written into the
    shared parameters). Measured on CPU (``bench/bench_ig_rig.py``), the batched vector-Jacobian
    product (``is_grads_batched``, the backward under vmap) is no faster (0.9× to 3.6× the time
    of this loop across runs); the loop holds one input gradient at a time and needs no vmap rule
    for every layer.
    """
    x = x.detach().float()
    baselines = baselines.detach().float()
    positions, weights = quadrature(rule, steps)
    positions = positions.to(x.device, torch.float32)
    weights = weights.to(x.device, torch.float32)
    n_base = baselines.shape[0]
    target_index = torch.as_tensor(targets, device=x.device)
    deltas = x.unsqueeze(0) - baselines                       # B×C×H×W

    def batch(start: int, stop: int) -> torch.Tensor:
        item = torch.arange(start, stop, device=x.device)
        draw, step = item // steps, item % steps
        beta = positions[step].view(-1, 1, 1, 1)
        with engine.autocast(False), torch.enable_grad():
            points = (baselines[draw] + beta * deltas[draw]).requires_grad_(True)
            picked = module(points).float()[:, target_index]   # batch×T
            scale = (weights[step].view(-1, 1, 1, 1) * deltas[draw])
            out = []
            for t in range(len(targets)):
                (grad,) = torch.autograd.grad(picked[:, t].sum(), points, retain_graph=t < len(targets) - 1)
                out.append((grad * scale).sum(0))
        return torch.stack(out)

    item_bytes = 4 * x.numel() * 64  # activations kept for the backward dominate; a rough guess for CUDA
    total = engine.map_sum(batch, n_base * steps, key=f"ig:{type(module).__name__}:{tuple(x.shape)}",
                           item_bytes=item_bytes,
                           progress=progress, message=message)
    with torch.no_grad(), engine.autocast(False):
        ends = module(torch.cat([x.unsqueeze(0), baselines])).float()[:, target_index]
    return IGResult(attributions=total / n_base, f_input=ends[0], f_baseline=ends[1:].mean(0))


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


def model_baselines(model, x: torch.Tensor, kind: str, noise_draws: int = 1, seed: int = 0) -> torch.Tensor:
    """``make_baselines`` with the colours and normalisation of a ``LoadedModel``."""
    mean = torch.tensor(model.mean).view(3, 1, 1)
    std = torch.tensor(model.std).view(3, 1, 1)
    return make_baselines(x, kind, black=model.normalized_constant(0.0).to(x.device),
                          white=model.normalized_constant(1.0).to(x.device),
                          to_normalized=lambda pixels: (pixels - mean) / std,
                          noise_draws=noise_draws, seed=seed)


def _ig(model, x, targets, *, engine, progress=None, steps, baseline, rule, reduce, noise_draws, seed):
    baselines = model_baselines(model, x, baseline, noise_draws, seed)
    result = integrated_gradients(model.module, x, baselines, targets, steps=steps, rule=rule,
                                  engine=engine, progress=progress)
    return MethodOutput(maps=reduce_channels(result.attributions, reduce), attributions=result.attributions,
                        extras={"per_target_completeness_gap": result.completeness_gap,
                                "per_target_f_input": result.f_input,
                                "per_target_f_baseline": result.f_baseline,
                                "path_points": steps * baselines.shape[0]})


IG = Method(
    "ig", "Integrated Gradients", "path", _ig,
    params={
        "steps": Param(int, 32, 2, 1024, help="points on the path from the baseline to the image"),
        "baseline": Param(str, "black", choices=BASELINES,
                          help="black, dataset mean (normalised zero), blurred image (σ = side/16), "
                               "uniform noise averaged over noise_draws, or white"),
        "rule": Param(str, "gausslegendre", choices=RULES, help="quadrature rule (Captum's names)"),
        "reduce": Param(str, "sum", choices=REDUCTIONS, help="channel reduction for the 2-D map"),
        "noise_draws": Param(int, 4, 1, 64, help="noise baselines averaged (baseline = noise only)"),
        "seed": Param(int, 0, 0, 2**31 - 1, help="seed of the noise baselines"),
    },
    description="Path integral of the gradient from a baseline to the image (Sundararajan et al. 2017); "
                "Σ attributions = F(x) − F(baseline) up to the quadrature error (the completeness gap).")
