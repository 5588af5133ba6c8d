"""The convergence rule of the sampling methods (RISE, SmoothGrad): run in doubling rounds and stop an
image once its map correlates with the previous round's at ≥ 1 − tolerance, twice in a row. The rule
and why it estimates the distance to the limit are in ``rise``'s module docstring.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .base import Param

TOLERANCE = Param(float, 0.0, 0.0, 0.5, step=0.001,
                  help="stop early once the map correlates ≥ 1 − tolerance with the previous round's, "
                       "twice in a row (rounds double the count; 0 = run the full count)")


def doubling_rounds(first: int, maximum: int) -> list[int]:
    """The counts ending each convergence round: first, 2·first, 4·first, … capped at ``maximum``."""
    counts = [min(first, maximum)]
    while counts[-1] < maximum:
        counts.append(min(2 * counts[-1], maximum))
    return counts


def map_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of maps …×H×W pairwise over the leading dimensions (1 where both are flat)."""
    a = a.flatten(-2).double()
    b = b.flatten(-2).double()
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    norm = (a.square().sum(-1) * b.square().sum(-1)).sqrt()
    return torch.where(norm > 0, (a * b).sum(-1) / norm.clamp(min=1e-300), torch.ones_like(norm))


def run_until_converged(n_images: int, rounds: Sequence[int], tolerance: float, run_round, current_maps):
    """The round loop shared by the sampling methods: ``run_round(images, lo, hi)`` adds the samples
    ``[lo, hi)`` of the (active) image indices ``images``; ``current_maps(counts)`` gives the B×T maps
    after ``counts`` (B) samples per image. An image stops after two passing rounds in a row.
    Returns (used B, correlations B×K with NaN where no round was compared: the first one and
    those after an image stopped), one host sync per round."""
    used = torch.zeros(n_images, dtype=torch.long)
    correlations = torch.full((n_images, len(rounds)), float("nan"), dtype=torch.float64)
    active = torch.arange(n_images)
    passed_last = torch.zeros(n_images, dtype=torch.bool)
    previous = None
    lo = 0
    for k, hi in enumerate(rounds):
        run_round(active, lo, hi)
        used[active] = hi
        maps = current_maps(used)
        if previous is not None:
            on_device = active.to(maps.device)
            r = map_correlation(maps[on_device], previous[on_device]).amin(-1).cpu()  # worst target per image
            correlations[active, k] = r
            passed = r >= 1 - tolerance
            done = passed & passed_last[active]
            passed_last[active] = passed
            active = active[~done]
            if len(active) == 0:
                break
        previous, lo = maps, hi
    return used, correlations
