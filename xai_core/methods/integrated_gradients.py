"""Integrated Gradients (Sundararajan et al. 2017) with several baselines and quadrature rules.

IG_i = (x_i − x'_i) · ∫₀¹ ∂F(x' + β(x − x'))/∂x_i dβ, the integral approximated by a
quadrature rule over ``steps`` points of the straight path. All path points of all baselines
(and, for a batch of images, of every image) go through the model in engine batches; every
target reuses the same forward pass (``instrument.gradients``). Baselines are named
replacements (``xai_core.replacements``: black, grey = the dataset mean, blur, noise...). The
computation is kept in fp32 (precision section ``path_integral``) so that completeness, Σ IG = F(x) − F(x'), holds up
to the quadrature error — the gap is returned per target.

Convergence (``tolerance`` τ > 0): the steps are refined, 2 → 3 → 5 → 9 … (trapezoid, reusing
every earlier node), doubling (left/right, reusing), tripling (middle, reusing) or doubling with a
restart (Gauss–Legendre, whose nodes do not nest), until |Σ IG − (F(x) − F(x'))| ≤ τ·|F(x) − F(x')|
for every target, ``steps`` being the maximum (``adaptive_path_integral``).

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


def _rows(xs: torch.Tensor, targets: Targets) -> torch.Tensor:
    """Targets as B×T rows: the same classes for every image (a list) or each image's own (B×T)."""
    return targets.to(xs.device) if isinstance(targets, torch.Tensor) else \
        torch.as_tensor(list(targets), device=xs.device).expand(len(xs), -1)


def _weighted_path_sum(module: nn.Module, xs: torch.Tensor, baselines: torch.Tensor, rows: torch.Tensor,
                       positions: torch.Tensor, weights: torch.Tensor, *, engine: Engine,
                       progress: Progress | None, message: str) -> torch.Tensor:
    """Σ_k w_k · ∂F_t/∂x(x' + β_k(x − x')) ⊙ (x − x'), averaged over each image's baselines: T×B×C×H×W.

    The B·D·K path points are the engine's items: one forward pass per batch serves every
    target, then one backward pass per target through the retained graph (``autograd.grad`` only).
    """
    n_images, n_base = baselines.shape[:2]
    steps = len(positions)
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
    return total / n_base


def _end_scores(module: nn.Module, xs: torch.Tensor, baselines: torch.Tensor, rows: torch.Tensor,
                engine: Engine) -> tuple[torch.Tensor, torch.Tensor]:
    """F_t(x) and F_t(x') (mean over each image's baselines), both T×B."""
    n_images, n_base = baselines.shape[:2]
    with torch.no_grad(), engine.precision("path_integral"):
        scores = module(torch.cat([xs, baselines.flatten(0, 1)])).float()
    ends = pick_scores(scores, torch.cat([rows, rows.repeat_interleave(n_base, 0)])).T      # T×(B + B·D)
    return ends[:, :n_images], ends[:, n_images:].reshape(rows.shape[1], n_images, n_base).mean(-1)


def path_integral(module: nn.Module, xs: torch.Tensor, baselines: torch.Tensor, targets: Targets, *,
                  steps: int, rule: str, engine: Engine, progress: Progress | None = None,
                  message: str = "Integrated Gradients") -> IGResult:
    """IG of ``module``'s outputs ``targets`` for each image of ``xs`` (B×C×H×W), averaged over that
    image's ``baselines`` (B×D×C×H×W); attributions T×B×C×H×W. ``targets`` are the same classes
    for every image (a list) or each image's own (a B×T tensor).

    Measured on CPU (``bench/bench_ig_rig.py``), the batched vector-Jacobian product
    (``is_grads_batched``) is no faster than the per-target backward loop, which holds one input
    gradient at a time.
    """
    xs, baselines = xs.detach().float(), baselines.detach().float()
    rows = _rows(xs, targets)
    positions, weights = quadrature(rule, steps)
    attributions = _weighted_path_sum(module, xs, baselines, rows, positions, weights, engine=engine,
                                      progress=progress, message=message)
    f_input, f_baseline = _end_scores(module, xs, baselines, rows, engine)
    return IGResult(attributions=attributions, f_input=f_input, f_baseline=f_baseline)


def refined_steps(rule: str, steps: int) -> int:
    """The next count of the refinement: 2n − 1 for the trapezoid (its nodes nest), 3n for the
    midpoint rule (nodes (2k+1)/(2n) nest in thirds), 2n otherwise (left/right nest; Gauss–Legendre
    does not)."""
    return {"riemann_trapezoid": 2 * steps - 1, "riemann_middle": 3 * steps}.get(rule, 2 * steps)


def _reuse(rule: str, old: int, new: int) -> tuple[torch.Tensor, float] | None:
    """Which nodes of the ``new``-point rule are not in the ``old`` one, and the factor c with
    w_new = c · w_old on the shared nodes; None when the old sum cannot be reused (not nested, or
    the shared weights do not scale by one factor)."""
    old_pos, old_w = quadrature(rule, old)
    new_pos, new_w = quadrature(rule, new)
    close = (new_pos[:, None] - old_pos[None, :]).abs() < 1e-9          # new × old
    if not bool(close.any(0).all()):
        return None
    ratio = new_w[close.any(1)] / old_w
    if not torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-9, atol=0):
        return None
    return torch.nonzero(~close.any(1)).flatten(), float(ratio[0])


def adaptive_path_integral(module: nn.Module, xs: torch.Tensor, baselines: torch.Tensor, targets: Targets, *,
                           steps: int, rule: str, tolerance: float, engine: Engine,
                           progress: Progress | None = None) -> tuple[IGResult, torch.Tensor, list[int],
                                                                      torch.Tensor]:
    """``path_integral`` refined until the relative completeness gap
    |Σ IG − (F(x) − F(x'))| / |F(x) − F(x')| ≤ ``tolerance`` for every target of an image, with
    ``steps`` as the maximum.

    Rounds run 2, ``refined_steps``(2), … capped at ``steps``. Where the rule nests (trapezoid,
    left, right, middle) a round evaluates only the new nodes and rescales the old sum; otherwise
    (Gauss–Legendre, or the last round capped at ``steps`` off the chain) it restarts. Each image
    stops on its own, so a batch equals its images one by one. Returns the result, the steps
    used per image (B), the round counts (K) and the relative gap per image, target and round
    (B×T×K, NaN after an image stopped); one host sync per round.
    """
    xs, baselines = xs.detach().float(), baselines.detach().float()
    rows = _rows(xs, targets)
    f_input, f_baseline = _end_scores(module, xs, baselines, rows, engine)
    scale = (f_input - f_baseline).abs().clamp(min=1e-12)                 # T×B
    rounds = [min(2, steps)]
    while rounds[-1] < steps:
        rounds.append(min(refined_steps(rule, rounds[-1]), steps))
    attributions = torch.zeros(rows.shape[1], *xs.shape, device=xs.device)
    used = torch.zeros(len(xs), dtype=torch.long)
    gaps = torch.full((len(xs), rows.shape[1], len(rounds)), float("nan"), dtype=torch.float64)
    active = torch.arange(len(xs))
    for k, n in enumerate(rounds):
        reuse = _reuse(rule, rounds[k - 1], n) if k else None
        positions, weights = quadrature(rule, n)
        on_device = active.to(xs.device)
        if reuse is not None:
            new_nodes, factor = reuse
            positions, weights = positions[new_nodes], weights[new_nodes]
            attributions[:, on_device] *= factor
        else:
            attributions[:, on_device] = 0
        attributions[:, on_device] += _weighted_path_sum(
            module, xs[on_device], baselines[on_device], rows[on_device], positions, weights, engine=engine,
            progress=None, message="")
        used[active] = n
        gap = ((attributions[:, on_device].flatten(2).sum(-1) - (f_input - f_baseline)[:, on_device]).abs()
               / scale[:, on_device]).T.cpu().double()                     # active×T
        gaps[active, :, k] = gap
        if progress is not None:
            progress(n / steps, f"Integrated Gradients: {n} / {steps} steps at most")
        active = active[(gap > tolerance).any(-1)]
        if len(active) == 0:
            break
    return IGResult(attributions, f_input, f_baseline), used, rounds, gaps


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
               constant, tolerance=0.0) -> tuple[IGResult, dict]:
    """The IG result and its convergence extras (none when ``tolerance`` is 0: the fixed ``steps``)."""
    baselines = ig_baselines(model, xs, baseline, noise_draws=noise_draws, seed=seed, constant=constant)
    if tolerance <= 0:
        return path_integral(model.module, xs, baselines, targets, steps=steps, rule=rule, engine=engine,
                             progress=progress), {}
    result, used, rounds, gaps = adaptive_path_integral(model.module, xs, baselines, targets, steps=steps, rule=rule,
                                                        tolerance=tolerance, engine=engine, progress=progress)
    n_targets = result.f_input.shape[0]
    return result, {"per_target_steps_used": used.view(-1, 1).expand(-1, n_targets).numpy().copy(), "round_steps": rounds,
                    "per_target_round_gaps": gaps.numpy()}


def ig_attribution(model, xs: torch.Tensor, targets: Targets, *, engine: Engine, steps: int, baseline: str,
                   rule: str, noise_draws: int, seed: int, constant: float, reduce: str = "sum",
                   tolerance: float = 0.0) -> torch.Tensor:
    """IG attributions T×B×C×H×W for a batch of images (the noise tunnel's view of ``ig``).

    ``reduce`` shapes only the ``ig`` method's own map; a composed map is the channel sum.
    """
    return _ig_result(model, xs, targets, engine=engine, steps=steps, baseline=baseline, rule=rule,
                      noise_draws=noise_draws, seed=seed, constant=constant, tolerance=tolerance)[0].attributions


def _ig_batch(model, xs, targets, *, engine, progress=None, reduce, **params):
    """IG of every image of ``xs`` for its own targets (B×T): all path points of all images in
    engine batches together."""
    result, convergence = _ig_result(model, xs, targets, engine=engine, progress=progress, **params)
    attributions = result.attributions.transpose(0, 1)                       # B×T×C×H×W
    return MethodOutput(maps=reduce_channels(attributions, reduce), attributions=attributions,
                        extras={"per_target_completeness_gap": result.completeness_gap.T,
                                "per_target_f_input": result.f_input.T,
                                "per_target_f_baseline": result.f_baseline.T,
                                "path_points": params["steps"] * (params["noise_draws"]
                                                                  if params["baseline"] == "noise" else 1)}
                        | convergence)


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
        "tolerance": Param(float, 0.0, 0.0, 0.5, step=0.001,
                           help="refine the steps until the relative completeness gap is at most this "
                                "(steps = the maximum; 0 = the fixed steps)"),
    },
    attribute=ig_attribution, to_map=sum_over_channels, batch_fn=_ig_batch,
    reference="Captum IntegratedGradients",
    description="Path integral of the gradient from a baseline to the image (Sundararajan et al. 2017); "
                "Σ attributions = F(x) − F(baseline) up to the quadrature error (the completeness gap).")
