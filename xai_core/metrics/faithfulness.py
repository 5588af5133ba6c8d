"""Faithfulness metrics: deletion and insertion (Petsiuk et al., "RISE: Randomized input sampling
for explanation of black-box models", BMVC 2018, §4.1).

Rank the pixels by the map, most salient first (ties in raster order). At step k = 0..K the first
n_k = ⌊k·H·W / K⌋ pixels are

- **deletion**: replaced by the replacement image (default ``black``, the paper's), starting from
  the image;
- **insertion**: taken from the image, starting from the replacement (default ``blur``, the
  paper's: σ = side / 16, ``xai_core.replacements``),

and the curve c_k is the softmax probability of the map's target class. The score is the area
under the curve over the fraction removed x_k = k / K ∈ [0, 1] (trapezoid):
AUC = Σ_k (c_k + c_{k+1}) / (2K). A faithful map makes deletion fall fast (low AUC, lower is
better) and insertion rise fast (high AUC). Every image × step is one item of the engine's
batches (section ``score_difference``: fp32 everywhere), so all curves of a batch share forwards.

Against Quantus 0.6.0 ``PixelFlipping`` (``tests/test_metrics_quantus.py``): with
``features_in_step`` = C·H·W / K its curve is our c_1..c_K (it has no c_0), equal to 1e-6 with the
``grey`` replacement (its ``perturb_baseline=0.0``) and with any replacement given as its
``perturb_func``; insertion is ``PixelFlipping`` started from the replacement image and filling in
the image. Quantus ranks and flips the C·H·W values one by one, so it flips whole pixels only when
``features_in_step`` is a multiple of C, and it requires that it divide H·W: K a multiple of 3
with H·W divisible by K / 3 (e.g. 48 px and K = 12; never with K a power of 2).

Differences of convention: Quantus's ``"black"`` is the image's own minimum value, not black (ours
is intensity 0 per channel in the model's normalisation); its AUC is ``np.trapz`` with dx = 1 over
c_1..c_K (which also fails on numpy ≥ 2.4, where ``np.trapz`` is gone), ours spans [0, 1] from c_0.
``RegionPerturbation`` ranks square patches by their summed attribution and records c_0 − c_k; with
``patch_size=1`` and K = H·W it is c_0 − (c_1..c_K).
"""
from __future__ import annotations

import torch

from ..errors import ParameterError
from ..replacements import DEFAULT_CONSTANT, REPLACEMENTS, replace, replacement_image
from ..replacements import HELP as REPLACEMENT_HELP
from .base import GroundTruth, Metric, MetricContext, MetricOutput, Param


def saliency_ranks(maps: torch.Tensor) -> torch.Tensor:
    """B×H×W → B×H×W long: each pixel's rank in its map, 0 for the most salient (ties: raster order)."""
    flat = maps.flatten(1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions).view_as(maps)


def step_counts(pixels: int, steps: int) -> torch.Tensor:
    """K+1 pixel counts n_k = ⌊k·pixels / K⌋, from 0 to all the pixels."""
    return torch.arange(steps + 1) * pixels // steps


def probability_curves(maps: torch.Tensor, context: MetricContext, *, insertion: bool, replacement: str,
                       constant: float, seed: int, steps: int) -> torch.Tensor:
    """B×(K+1): the target's probability as pixels are deleted (or inserted) in order of saliency."""
    model, engine = context.model, context.engine
    xs = context.xs.to(model.device, torch.float32)
    fills = torch.stack([replacement_image(model, x, replacement, value=constant, seed=seed) for x in xs])
    start, end = (fills, xs) if insertion else (xs, fills)
    ranks = saliency_ranks(maps.to(model.device)).unsqueeze(1)        # B×1×H×W
    counts = step_counts(ranks[0].numel(), steps).to(model.device)
    targets = context.targets.to(model.device, torch.long)
    per_image = steps + 1

    def probabilities(first: int, stop: int) -> torch.Tensor:
        item = torch.arange(first, stop, device=model.device)
        b, k = item // per_image, item % per_image
        from_end = (ranks[b] < counts[k].view(-1, 1, 1, 1)).to(xs.dtype)
        with torch.no_grad():
            logits = model.module(replace(end[b], from_end, start[b])).float()
        return logits.softmax(dim=-1).gather(1, targets[b].view(-1, 1))[:, 0]

    curves = engine.map_cat(probabilities, len(xs) * per_image, section="score_difference",
                            key=f"metric-{'insertion' if insertion else 'deletion'}-{model.name}",
                            progress=context.progress, message="insertion" if insertion else "deletion")
    return curves.view(len(xs), per_image)


def trapezoid_auc(curves: torch.Tensor) -> torch.Tensor:
    """B×(K+1) → B: area under each curve over [0, 1], K equal steps (trapezoid rule)."""
    steps = curves.shape[1] - 1
    return (curves[:, :-1] + curves[:, 1:]).sum(dim=1) / (2 * steps)


def _perturbation_metric(insertion: bool):
    def fn(maps: torch.Tensor, truth: GroundTruth, context: MetricContext | None, *, steps: int,
           replacement: str, constant: float, seed: int) -> MetricOutput:
        if context is None:
            raise ParameterError("Deletion and insertion need the model and its inputs.")
        curves = probability_curves(maps, context, insertion=insertion, replacement=replacement,
                                    constant=constant, seed=seed, steps=steps).to(torch.float64).cpu()
        return MetricOutput(scores=trapezoid_auc(curves), curves=curves,
                            curve_x=[k / steps for k in range(steps + 1)])

    fn.__doc__ = (f"B: AUC of the target's probability as pixels are {'inserted' if insertion else 'deleted'} "
                  "most salient first; curves B×(K+1).")
    return fn


def _params(default_replacement: str) -> dict[str, Param]:
    return {
        "steps": Param(int, 32, 2, 1024, widget="log_slider",
                       help="number of equal steps from no pixel to every pixel (K; the curve has K+1 points)"),
        "replacement": Param(str, default_replacement, choices=REPLACEMENTS,
                             help=f"what replaces a pixel: {REPLACEMENT_HELP}"),
        "constant": Param(float, DEFAULT_CONSTANT, 0.0, 1.0, step=0.05,
                          help="grey level of the 'constant' replacement"),
        "seed": Param(int, 0, 0, 2**31 - 1, widget="number", help="seed of the 'noise' replacement"),
    }


DELETION = Metric("deletion", "Deletion (AUC)", "faithfulness", _perturbation_metric(insertion=False),
                  params=_params("black"), higher_is_better=False, needs=frozenset({"model"}),
                  reference="Petsiuk et al. 2018; Quantus PixelFlipping",
                  description="Remove pixels most salient first: the target's probability should fall fast.")
INSERTION = Metric("insertion", "Insertion (AUC)", "faithfulness", _perturbation_metric(insertion=True),
                   params=_params("blur"), higher_is_better=True, needs=frozenset({"model"}),
                   reference="Petsiuk et al. 2018; Quantus PixelFlipping (from the replacement)",
                   description="Add pixels most salient first to the replacement: the probability should rise fast.")

METRICS: list[Metric] = [DELETION, INSERTION]
