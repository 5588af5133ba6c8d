"""Localisation metrics: does the map land on the object? Each compares a batch of maps B×H×W
with a ground-truth region R (the object's box, or its mask with ``region=mask``), all images at
once on the maps' device, in float64.

Notation: M the map, N(M) = (M − min M) / (max M − min M) its min-max normalisation to [0, 1]
(per map), R the region's pixels, R̄ the others, |·| a pixel count.

- **HAGTR** (highest activation in the ground-truth region) = max_{p∈R} N(M)_p,
- **MAGTR** (mean activation in the region) = Σ_{p∈R} N(M)_p / |R|,
- **MANGTR** (mean activation outside it) = Σ_{p∈R̄} N(M)_p / |R̄| (lower is better): the
  internship report's three scores (source document 004, ch. 4.4 and 9.1), computed there on
  Grad-CAM maps upsampled to the image and "normalised between 0 and 1", here for any method.
- **Pointing game** (Zhang et al., "Top-down neural attention by excitation backprop", IJCV 2018):
  1 if a maximum of M lies within ``tolerance`` pixels (Euclidean) of R, else 0. The paper's
  15 px at 224 px is scaled with the map side by default (4.3 px at 64 px).
- **Energy-based pointing game** (Wang et al., "Score-CAM", CVPRW 2020) = Σ_{p∈R} M⁺_p / Σ_p M⁺_p,
  the share of the positive part M⁺ = max(M, 0) inside the region.
- **Relevance mass accuracy** (Arras et al., "CLEVR-XAI", Inf. Fusion 2022) = Σ_{p∈R} M_p / Σ_p M_p,
  on the signed map as Quantus computes it (it equals the energy share on non-negative maps, which is
  what the paper's pooled relevance is).
- **Relevance rank accuracy** (Arras et al. 2022) = |top_K(M) ∩ R| / K with K = |R|: the share of
  the K highest pixels that fall in the region. Ties are ranked in raster order (as a stable sort).

Undefined cases score NaN: an empty region (or, for MANGTR, a region covering the image), a
constant map (it has no maximum and no normalisation), a map with no positive mass (energy
pointing game) or a zero total (relevance mass).

Against Quantus 0.6.0 (``tests/test_metrics_quantus.py``): the pointing game equals
``PointingGame`` with ``tolerance=0`` and equals it on the region dilated by a disc of the
tolerance radius otherwise; Quantus scores an empty mask as a hit (it writes NaN into a bool
array) and every pixel of a constant map as a maximum, where we give NaN. Relevance mass and rank
accuracy equal ``RelevanceMassAccuracy``/``RelevanceRankAccuracy`` and the energy pointing game
equals ``AttributionLocalisation(positive_attributions=True, abs=False)`` up to its 1e-9 added to
the denominator (which scores a map without positive mass 0, not NaN). Quantus breaks rank ties
with numpy's unstable argsort, so rank accuracy is compared on tie-free maps (and our tie rule
against a stable sort). Quantus has no HAGTR, MAGTR or MANGTR.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .base import GroundTruth, Metric, MetricContext, MetricOutput, Param, region_param

REFERENCE_SIDE = 224
"""Input side at which the pointing game's tolerance is given (Zhang et al.: 15 px at 224 px)."""
_POINT_CHUNK_ELEMENTS = 1 << 24
"""Bound on (maximum points × disc pixels) looked at once by the pointing game."""


# ------------------------------------------------------------------ ground truth
def region_masks(truth: GroundTruth, region: str, height: int, width: int, device: torch.device) -> torch.Tensor:
    """B×H×W bool: the object's box (x1, y1 exclusive, clipped to the image) or its mask."""
    if region == "mask":
        assert truth.masks is not None
        return truth.masks.to(device=device, dtype=torch.bool)
    assert truth.boxes is not None
    x0, y0, x1, y1 = truth.boxes.to(device=device, dtype=torch.long).unbind(-1)
    ys = torch.arange(height, device=device).view(1, -1, 1)
    xs = torch.arange(width, device=device).view(1, 1, -1)
    inside_y = (ys >= y0.view(-1, 1, 1)) & (ys < y1.view(-1, 1, 1))
    inside_x = (xs >= x0.view(-1, 1, 1)) & (xs < x1.view(-1, 1, 1))
    return inside_y & inside_x


def min_max(maps: torch.Tensor) -> torch.Tensor:
    """Each map rescaled to [0, 1] (a constant map becomes 0; callers score it NaN)."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    return (maps - low) / torch.where(span > 0, span, torch.ones_like(span))


def is_constant(maps: torch.Tensor) -> torch.Tensor:
    """B bool: maps with a single value everywhere."""
    return maps.amax(dim=(-2, -1)) == maps.amin(dim=(-2, -1))


def _output(scores: torch.Tensor, undefined: torch.Tensor) -> MetricOutput:
    nan = torch.full_like(scores, math.nan)
    return MetricOutput(scores=torch.where(undefined, nan, scores).cpu())


def _prepare(maps: torch.Tensor, truth: GroundTruth, region: str) -> tuple[torch.Tensor, torch.Tensor]:
    maps = maps.to(torch.float64)
    return maps, region_masks(truth, region, *maps.shape[-2:], maps.device)


# ------------------------------------------------------------ the report's three
def _hagtr(maps: torch.Tensor, truth: GroundTruth, context: MetricContext | None, *, region: str) -> MetricOutput:
    """B: highest normalised activation in the region."""
    maps, inside = _prepare(maps, truth, region)
    top = min_max(maps).masked_fill(~inside, -math.inf).amax(dim=(-2, -1))
    return _output(top, is_constant(maps) | ~inside.any(dim=(-2, -1)))


def _mean_activation(maps: torch.Tensor, truth: GroundTruth, region: str, outside: bool) -> MetricOutput:
    maps, inside = _prepare(maps, truth, region)
    where = ~inside if outside else inside
    count = where.sum(dim=(-2, -1))
    mean = (min_max(maps) * where).sum(dim=(-2, -1)) / count.clamp(min=1)
    return _output(mean, is_constant(maps) | (count == 0))


def _magtr(maps: torch.Tensor, truth: GroundTruth, context: MetricContext | None, *, region: str) -> MetricOutput:
    """B: mean normalised activation inside the region."""
    return _mean_activation(maps, truth, region, outside=False)


def _mangtr(maps: torch.Tensor, truth: GroundTruth, context: MetricContext | None, *, region: str) -> MetricOutput:
    """B: mean normalised activation outside the region."""
    return _mean_activation(maps, truth, region, outside=True)


# -------------------------------------------------------------- pointing games
def tolerance_radius(tolerance: float, height: int, width: int, scale: bool) -> float:
    """The pointing game's tolerance in pixels of this map: scaled from 224 px unless ``scale`` is off."""
    return tolerance * min(height, width) / REFERENCE_SIDE if scale else tolerance


def disc_offsets(radius: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(dy, dx) of every pixel offset within ``radius`` (Euclidean), (0, 0) included."""
    reach = int(math.floor(radius))
    dy, dx = torch.meshgrid(torch.arange(-reach, reach + 1, device=device),
                            torch.arange(-reach, reach + 1, device=device), indexing="ij")
    within = dy ** 2 + dx ** 2 <= radius * radius
    return dy[within], dx[within]


def pointing_hits(maps: torch.Tensor, inside: torch.Tensor, radius: float) -> torch.Tensor:
    """B bool: some maximum of the map lies within ``radius`` pixels of a region pixel.

    Every maximum (ties included) looks at the region pixels of the disc around it, a chunk of
    maxima at a time (a map with a large plateau of maxima has many).
    """
    height, width = maps.shape[-2:]
    b, y, x = (maps == maps.amax(dim=(-2, -1), keepdim=True)).nonzero(as_tuple=True)
    dy, dx = disc_offsets(radius, maps.device)
    hits = torch.zeros(len(maps), dtype=torch.long, device=maps.device)
    chunk = max(1, _POINT_CHUNK_ELEMENTS // len(dy))
    for start in range(0, len(b), chunk):
        pb = b[start:start + chunk]
        qy, qx = y[start:start + chunk, None] + dy, x[start:start + chunk, None] + dx   # points × disc
        on_image = (qy >= 0) & (qy < height) & (qx >= 0) & (qx < width)
        near = inside[pb[:, None], qy.clamp(0, height - 1), qx.clamp(0, width - 1)] & on_image
        hits.scatter_reduce_(0, pb, near.any(dim=1).long(), reduce="amax")
    return hits.bool()


def _pointing_game(maps: torch.Tensor, truth: GroundTruth, context: MetricContext | None, *, region: str,
                   tolerance: float, scale_tolerance: bool) -> MetricOutput:
    """B: 1.0 for a hit, 0.0 for a miss."""
    maps, inside = _prepare(maps, truth, region)
    radius = tolerance_radius(tolerance, *maps.shape[-2:], scale_tolerance)
    hits = pointing_hits(maps, inside, radius).to(torch.float64)
    return _output(hits, is_constant(maps) | ~inside.any(dim=(-2, -1)))


def _share_inside(maps: torch.Tensor, inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """B: Σ_R M / Σ M, and B bool where it is undefined (zero total or empty region)."""
    total = maps.sum(dim=(-2, -1))
    share = (maps * inside).sum(dim=(-2, -1)) / torch.where(total != 0, total, torch.ones_like(total))
    return share, (total == 0) | ~inside.any(dim=(-2, -1))


def _energy_pointing_game(maps: torch.Tensor, truth: GroundTruth, context: MetricContext | None, *,
                          region: str) -> MetricOutput:
    """B: share of the positive mass inside the region."""
    maps, inside = _prepare(maps, truth, region)
    share, undefined = _share_inside(maps.clamp(min=0), inside)
    return _output(share, undefined | is_constant(maps))


def _relevance_mass_accuracy(maps: torch.Tensor, truth: GroundTruth, context: MetricContext | None, *,
                             region: str) -> MetricOutput:
    """B: share of the (signed) relevance inside the region."""
    maps, inside = _prepare(maps, truth, region)
    share, undefined = _share_inside(maps, inside)
    return _output(share, undefined | is_constant(maps))


def _relevance_rank_accuracy(maps: torch.Tensor, truth: GroundTruth, context: MetricContext | None, *,
                             region: str) -> MetricOutput:
    """B: share of the |R| highest pixels that lie in the region."""
    maps, inside = _prepare(maps, truth, region)
    flat, inside_flat = maps.flatten(1), inside.flatten(1)
    k = inside_flat.sum(dim=1)
    # τ, the K-th largest value (with multiplicity): the top K are the pixels above τ and, in raster
    # order, the first K − #(above τ) pixels equal to τ (a stable sort's tie rule), without a full sort
    largest = flat.topk(max(int(k.max()), 1), dim=1).values
    threshold = largest.gather(1, (k - 1).clamp(min=0).unsqueeze(1))
    above, tied = flat > threshold, flat == threshold
    room = (k - above.sum(dim=1)).unsqueeze(1)
    top = above | (tied & (tied.cumsum(dim=1) <= room))
    hits = (top & inside_flat).sum(dim=1)
    return _output(hits.to(torch.float64) / k.clamp(min=1), is_constant(maps) | (k == 0))


# ------------------------------------------------------------------ registration
_TOLERANCE = {
    "tolerance": Param(float, 15.0, 0.0, 224.0, step=1.0, label="tolerance (px at 224 px)",
                       help="a maximum this close to the object still counts as a hit (Zhang et al.: 15 px at 224 px)"),
    "scale_tolerance": Param(bool, True, widget="checkbox",
                             help="scale the tolerance with the map side (side / 224); off: plain pixels"),
}


def _localisation(name: str, label: str, fn: Callable, *, higher_is_better: bool = True, reference: str,
                  description: str, extra: dict[str, Param] | None = None) -> Metric:
    return Metric(name, label, "localisation", fn, params={"region": region_param(), **(extra or {})},
                  higher_is_better=higher_is_better, needs=frozenset({"box"}), reference=reference,
                  description=description)


HAGTR = _localisation("hagtr", "HAGTR (highest activation in the object)", _hagtr,
                      reference="closed form (internship report)",
                      description="The highest value of the min-max normalised map inside the object.")
MAGTR = _localisation("magtr", "MAGTR (mean activation in the object)", _magtr,
                      reference="closed form (internship report)",
                      description="The mean of the min-max normalised map inside the object.")
MANGTR = _localisation("mangtr", "MANGTR (mean activation outside the object)", _mangtr, higher_is_better=False,
                       reference="closed form (internship report)",
                       description="The mean of the min-max normalised map outside the object (lower is better).")
POINTING_GAME = _localisation("pointing_game", "Pointing game", _pointing_game, extra=_TOLERANCE,
                              reference="Quantus PointingGame (tolerance 0, or on the dilated region)",
                              description="Whether the map's maximum lies on the object, within a tolerance.")
ENERGY_POINTING_GAME = _localisation(
    "energy_pointing_game", "Energy-based pointing game", _energy_pointing_game,
    reference="Quantus AttributionLocalisation (positive_attributions)",
    description="The share of the map's positive mass that lies on the object.")
RELEVANCE_MASS_ACCURACY = _localisation(
    "relevance_mass_accuracy", "Relevance mass accuracy", _relevance_mass_accuracy,
    reference="Quantus RelevanceMassAccuracy",
    description="The share of the map's (signed) total that lies on the object.")
RELEVANCE_RANK_ACCURACY = _localisation(
    "relevance_rank_accuracy", "Relevance rank accuracy", _relevance_rank_accuracy,
    reference="Quantus RelevanceRankAccuracy",
    description="The share of the K highest pixels on the object, K its size in pixels.")

METRICS: list[Metric] = [HAGTR, MAGTR, MANGTR, POINTING_GAME, ENERGY_POINTING_GAME, RELEVANCE_MASS_ACCURACY,
                         RELEVANCE_RANK_ACCURACY]
