"""Occlusion sensitivity (Zeiler & Fergus 2014): slide a square occluder over the image.

Every occluder position is one item of the engine's batches. The occluder grid is Captum's
``Occlusion`` grid (window ``w``, stride ``s``: ``ceil((H − w) / s) + 1`` positions per axis,
starting at multiples of ``s``, the last windows cut at the border), so the per-pixel map
— the target's probability drop ``p(x) − p(x_occluded)`` averaged over the windows covering
each pixel — equals Captum's attribution with a softmax forward. Per position, the same
forward passes also give (a) the target's probability, (b) the most probable class and
(c) the total activation of the layer's strongest feature map (strongest on the intact
image), the three maps of Zeiler & Fergus's figure 7.

Coarse-to-fine search (``search="coarse_to_fine"``) evaluates the exhaustive grid only where
it matters. The occluder stays the same (window ``w``); what is coarse is the lattice of positions.
Level ``l = L, …, 0`` is the lattice of every ``2^l``-th position of the exhaustive grid along each
axis (plus the last one), so level 0 is the exhaustive grid and each level contains the coarser
ones. Level ``L`` is evaluated everywhere. Going from level ``l+1`` to ``l``:

1. per target, the level-``l+1`` positions are sorted by drop ``d``; those whose preceding
   positive mass ``Σ max(d, 0)`` is below ``refine_mass`` of the total are kept (the fewest
   positions holding that share; ``refine_mass = 1`` keeps every position); the kept sets of
   all targets are joined;
2. every level-``l`` position that lies next to a kept position (one of the lattice nodes it is
   interpolated from) is evaluated (one host sync per level, to count them); the others get the
   bilinear interpolation, in position index, of the level-``l+1`` drops. Neighbouring windows
   overlap (stride < window), so the drop is a smooth function of the position and the
   interpolation follows it where nothing was kept.

The level-0 grid (evaluated values where refined, interpolations elsewhere) then gives the map by
the same per-pixel average: at evaluated positions the grid is the exhaustive grid, so a pixel
covered only by evaluated windows has exactly the exhaustive value. All targets share the
forward passes; with several targets a target is refined at least where it alone would be.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import Engine, Progress
from ..errors import ParameterError
from ..instrument.capture import capture
from ..model_handle import LoadedModel
from ..replacements import DEFAULT_CONSTANT, REPLACEMENTS, replacement_image
from ..replacements import HELP as REPLACEMENT_HELP
from .base import Method, MethodOutput, Param

def occluder_starts(size: int, window: int, stride: int) -> list[int]:
    """Top/left coordinates along one axis, as Captum's Occlusion places them."""
    return [k * stride for k in range(math.ceil((size - window) / stride) + 1)]


SEARCHES = ("exhaustive", "coarse_to_fine")


@dataclass(frozen=True)
class OcclusionGrid:
    """Captum's occluder positions (row-major over ``ys`` × ``xs``) and the maps between
    per-position values (T×Py×Px) and per-pixel maps (T×H×W)."""
    ys: list[int]
    xs: list[int]
    window: int
    stride: int

    @classmethod
    def of(cls, height: int, width: int, window: int, stride: int) -> "OcclusionGrid":
        return cls(occluder_starts(height, window, stride), occluder_starts(width, window, stride), window, stride)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.ys), len(self.xs)

    @property
    def size(self) -> int:
        return len(self.ys) * len(self.xs)

    def _extent(self) -> tuple[int, int]:
        return self.ys[-1] + self.window, self.xs[-1] + self.window  # the last windows may pass the border

    def starts(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Top and left of every position, row-major."""
        tops = torch.tensor([y for y in self.ys for _ in self.xs], device=device)
        lefts = torch.tensor([c for _ in self.ys for c in self.xs], device=device)
        return tops, lefts

    def fold_sum(self, values: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """T×Py×Px → T×H×W: the sum of the values of the windows covering each pixel."""
        t, w = values.shape[0], self.window
        patches = values.reshape(t, 1, -1).expand(t, w * w, -1)
        return F.fold(patches, self._extent(), kernel_size=w, stride=self.stride)[:, 0, :height, :width]

    def fold_mean(self, values: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """T×Py×Px → T×H×W: the mean over the windows covering each pixel (Captum's average)."""
        return self.fold_sum(values, height, width) / self.fold_sum(torch.ones_like(values[:1]), height, width)


@dataclass
class OcclusionScan:
    """Per-position results on the device; grids are Py×Px (rows follow ``ys``, columns ``xs``).

    ``evaluated`` (coarse-to-fine only) marks the positions that had a forward pass; elsewhere
    ``probability`` is the coarse estimate, ``top_class`` is −1 and ``feature_activation`` NaN.
    ``forwards`` counts the forward passes, the intact image included."""
    ys: list[int]
    xs: list[int]
    window: int
    stride: int
    base_probability: torch.Tensor   # T, target probabilities on the intact image
    probability: torch.Tensor        # T×Py×Px, target probability with the occluder at each position
    top_class: torch.Tensor          # Py×Px, most probable class at each position
    feature_channel: int | None      # strongest feature map of the layer on the intact image
    feature_activation: torch.Tensor | None  # Py×Px, its total activation at each position
    forwards: int = 0
    evaluated: torch.Tensor | None = None   # Py×Px bool; None: every position

    @property
    def grid(self) -> OcclusionGrid:
        return OcclusionGrid(self.ys, self.xs, self.window, self.stride)

    def drop_map(self, height: int, width: int) -> torch.Tensor:
        """T×H×W: probability drop averaged over the windows covering each pixel (= Captum)."""
        return self.grid.fold_mean(self.base_probability.view(-1, 1, 1) - self.probability, height, width)


def _check_window(window: int, stride: int, height: int, width: int) -> None:
    if not 1 <= window <= min(height, width):
        raise ParameterError(f"The occluder window must be between 1 and {min(height, width)} pixels; got {window}.")
    if not 1 <= stride <= window:
        raise ParameterError(f"The occluder stride must be between 1 and the window ({window} pixels); got {stride}.")


class _Occluder:
    """Forward passes of one image with a square occluded, read for every target at once."""

    def __init__(self, model: LoadedModel, x: torch.Tensor, targets: list[int], *, fill: str, constant: float,
                 seed: int, layer: str | None, engine: Engine):
        self.model, self.engine, self.layer = model, engine, layer
        self.x = x.to(model.device, torch.float32)
        self.baseline = replacement_image(model, self.x, fill, value=constant, seed=seed)
        self.target_index = torch.as_tensor(targets, device=self.x.device)
        self.rows = torch.arange(self.x.shape[1], device=self.x.device)
        self.cols = torch.arange(self.x.shape[2], device=self.x.device)
        with torch.no_grad():
            logits, activation = self._forward(self.x.unsqueeze(0))
        self.base_probability = logits.softmax(-1)[0, self.target_index]
        self.channel = None if activation is None else int(activation[0].sum(dim=(1, 2)).argmax())

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        # fp32 even inside ``map``: the map is a difference of probabilities, often small.
        with self.engine.precision("score_difference"):
            if self.layer is None:
                return self.model.module(batch).float(), None
            with capture(self.model.module, self.layer, detach=True) as seen:
                logits = self.model.module(batch).float()
        return logits, seen.feature_map().float()

    def evaluate(self, tops: torch.Tensor, lefts: torch.Tensor, window: int, *, progress: Progress | None,
                 message: str) -> torch.Tensor:
        """N×(T+1[+1]) per position: target probabilities, most probable class[, feature activation]."""
        t = len(self.target_index)
        if len(tops) == 0:
            return torch.empty(0, t + 1 + (self.channel is not None), device=self.x.device)
        rows, cols = self.rows.view(1, -1, 1), self.cols.view(1, 1, -1)

        @torch.no_grad()
        def occluded(start: int, stop: int) -> torch.Tensor:
            top, left = tops[start:stop].view(-1, 1, 1), lefts[start:stop].view(-1, 1, 1)
            inside = ((rows >= top) & (rows < top + window) & (cols >= left) & (cols < left + window)).unsqueeze(1)
            logits, activation = self._forward(torch.where(inside, self.baseline.unsqueeze(0), self.x.unsqueeze(0)))
            probs = logits.softmax(-1)
            columns = [probs[:, self.target_index], probs.argmax(-1, keepdim=True).float()]
            if activation is not None:
                columns.append(activation[:, self.channel].sum(dim=(1, 2)).unsqueeze(1))
            return torch.cat(columns, dim=1)

        _, height, width = self.x.shape
        return self.engine.map_cat(occluded, len(tops), section="score_difference",
                                   key=f"occlusion:{self.model.name}:{height}", item_bytes=self.x.numel() * 4 * 8,
                                   progress=progress, message=message)

    def result(self, grid: OcclusionGrid, probability: torch.Tensor, finest: torch.Tensor, index: torch.Tensor | None,
               forwards: int) -> OcclusionScan:
        """The scan of ``grid`` whose positions ``index`` (None: all, in order) gave the rows of ``finest``."""
        t = len(self.target_index)
        top_class = torch.full((grid.size,), -1, dtype=torch.long, device=self.x.device)
        activation = None
        evaluated = None
        if index is None:
            index = torch.arange(grid.size, device=self.x.device)
        else:
            evaluated = torch.zeros(grid.size, dtype=torch.bool, device=self.x.device)
            evaluated[index] = True
            evaluated = evaluated.reshape(grid.shape)
        top_class[index] = finest[:, t].long()
        if self.channel is not None:
            activation = torch.full((grid.size,), float("nan"), device=self.x.device)
            activation[index] = finest[:, t + 1]
            activation = activation.reshape(grid.shape)
        return OcclusionScan(ys=grid.ys, xs=grid.xs, window=grid.window, stride=grid.stride,
                             base_probability=self.base_probability, probability=probability,
                             top_class=top_class.reshape(grid.shape), feature_channel=self.channel,
                             feature_activation=activation, forwards=forwards, evaluated=evaluated)


def scan(model: LoadedModel, x: torch.Tensor, targets: list[int], *, window: int, stride: int, fill: str,
         constant: float = DEFAULT_CONSTANT, seed: int = 0, layer: str | None = None, engine: Engine | None = None, progress: Progress | None = None) -> OcclusionScan:
    """Evaluate every occluder position in batches (one forward pass per position)."""
    _, height, width = x.shape
    _check_window(window, stride, height, width)
    occluder = _Occluder(model, x, targets, fill=fill, constant=constant, seed=seed, layer=layer,
                         engine=engine or Engine(model.device))
    grid = OcclusionGrid.of(height, width, window, stride)
    per_position = occluder.evaluate(*grid.starts(occluder.x.device), window, progress=progress, message="occluding")
    probability = per_position[:, :len(targets)].T.reshape(len(targets), *grid.shape)
    return occluder.result(grid, probability, per_position, None, forwards=1 + grid.size)


def _kept_positions(drop: torch.Tensor, refine_mass: float) -> torch.Tensor:
    """T×P drops → P bool: the fewest positions holding ``refine_mass`` of each target's positive
    drop mass, joined over targets (step 1 of the module docstring)."""
    if refine_mass >= 1.0:
        return torch.ones(drop.shape[1], dtype=torch.bool, device=drop.device)
    positive = drop.clamp(min=0)
    ordered, order = positive.sort(dim=1, descending=True)
    before = ordered.cumsum(1) - ordered
    keep_sorted = before < refine_mass * ordered.sum(1, keepdim=True)
    keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
    return keep.any(0)


def _lattice(n: int, step: int) -> list[int]:
    """Indices 0, step, 2·step, … of an axis of ``n`` positions, and always the last one."""
    return sorted(set(range(0, n, step)) | {n - 1})


def _interpolation(fine: list[int], coarse: list[int]) -> torch.Tensor:
    """len(fine)×len(coarse) matrix of linear interpolation in index space (``coarse`` ⊂ ``fine``)."""
    matrix = torch.zeros(len(fine), len(coarse))
    for row, p in enumerate(fine):
        hi = next(k for k, c in enumerate(coarse) if c >= p)
        if coarse[hi] == p:
            matrix[row, hi] = 1.0
            continue
        lo = hi - 1
        weight = (p - coarse[lo]) / (coarse[hi] - coarse[lo])
        matrix[row, lo], matrix[row, hi] = 1 - weight, weight
    return matrix


def refine_scan(model: LoadedModel, x: torch.Tensor, targets: list[int], *, window: int, stride: int, fill: str,
                levels: int, refine_mass: float, constant: float = DEFAULT_CONSTANT, seed: int = 0,
                layer: str | None = None, engine: Engine | None = None,
                progress: Progress | None = None) -> OcclusionScan:
    """Coarse-to-fine occlusion (module docstring): the exhaustive grid of ``window``/``stride``,
    evaluated where coarser lattices found the drop mass and interpolated elsewhere."""
    _, height, width = x.shape
    _check_window(window, stride, height, width)
    grid = OcclusionGrid.of(height, width, window, stride)
    if min(grid.shape) < 2**levels + 1:  # the coarsest lattice would be the border positions alone
        raise ParameterError(f"Coarse-to-fine occlusion with {levels} level(s) needs at least {2**levels + 1} "
                             f"occluder positions per side; window {window} and stride {stride} give "
                             f"{min(grid.shape)} on the {height}×{width} image: use fewer levels or a smaller stride.")
    occluder = _Occluder(model, x, targets, fill=fill, constant=constant, seed=seed, layer=layer,
                         engine=engine or Engine(model.device))
    device, t = occluder.x.device, len(targets)
    tops, lefts = grid.starts(device)
    rows = torch.zeros(grid.size, t + 1 + (occluder.channel is not None), device=device)
    evaluated = torch.zeros(grid.shape, dtype=torch.bool, device=device)
    base = occluder.base_probability.view(-1, 1, 1)

    def run(wanted: torch.Tensor, level: int) -> None:
        index = (wanted & ~evaluated).flatten().nonzero().squeeze(1)  # the level's one host sync
        rows[index] = occluder.evaluate(tops[index], lefts[index], window, progress=progress,
                                        message=f"occluding, level {levels - level + 1} of {levels + 1}")
        evaluated.view(-1)[index] = True

    ys, xs = _lattice(grid.shape[0], 2**levels), _lattice(grid.shape[1], 2**levels)
    def at(lattice_ys: list[int], lattice_xs: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor(lattice_ys, device=device).view(-1, 1), torch.tensor(lattice_xs, device=device).view(1, -1))

    wanted = torch.zeros(grid.shape, dtype=torch.bool, device=device)
    wanted[at(ys, xs)] = True
    run(wanted, levels)
    drop = (base - rows[:, :t].T.reshape(t, *grid.shape))[(slice(None), *at(ys, xs))]   # T×|ys|×|xs|
    for level in range(levels - 1, -1, -1):
        fine_ys, fine_xs = _lattice(grid.shape[0], 2**level), _lattice(grid.shape[1], 2**level)
        along_y = _interpolation(fine_ys, ys).to(device)
        along_x = _interpolation(fine_xs, xs).to(device)
        kept = _kept_positions(drop.flatten(1), refine_mass).float().reshape(1, len(ys), len(xs))
        near_kept = ((along_y > 0).float() @ kept @ (along_x > 0).float().T)[0] > 0
        wanted = torch.zeros(grid.shape, dtype=torch.bool, device=device)
        wanted[at(fine_ys, fine_xs)] = near_kept
        run(wanted, level)
        exact = (base - rows[:, :t].T.reshape(t, *grid.shape))[(slice(None), *at(fine_ys, fine_xs))]
        drop = torch.where(evaluated[at(fine_ys, fine_xs)], exact, along_y @ drop @ along_x.T)
        ys, xs = fine_ys, fine_xs
    index = evaluated.flatten().nonzero().squeeze(1)
    return occluder.result(grid, base - drop, rows[index], index, forwards=1 + len(index))


@dataclass
class OcclusionMaps:
    """Host arrays for one target, ready for the page."""
    target: int
    base_probability: float
    probability: np.ndarray          # Py×Px, (a) the target's probability at each occluder position
    drop_map: np.ndarray             # H×W, probability drop averaged per pixel (Captum's form)
    top_class: np.ndarray            # Py×Px int, (b) the most probable class at each position
    top_class_names: dict[int, str]  # legend of (b): the classes that appear
    feature_activation: np.ndarray | None  # Py×Px, (c) total activation of the strongest map
    feature_channel: int | None
    layer: str | None
    ys: list[int]
    xs: list[int]
    window: int


def occlusion_sensitivity(model: LoadedModel, x: torch.Tensor, target: int | str, *, window: int = 16,
                          stride: int = 8, fill: str = "grey", constant: float = DEFAULT_CONSTANT,
                          seed: int = 0, layer: str | None = None,
                          engine: Engine | None = None, progress: Progress | None = None) -> OcclusionMaps:
    """Zeiler & Fergus's three occlusion maps (a), (b), (c) and the per-pixel drop map."""
    target = model.resolve_target(target)
    result = scan(model, x, [target], window=window, stride=stride, fill=fill, constant=constant, seed=seed,
                  layer=layer, engine=engine, progress=progress)
    top = result.top_class.cpu().numpy()
    return OcclusionMaps(
        target=target, base_probability=float(result.base_probability[0]),
        probability=result.probability[0].cpu().numpy(),
        drop_map=result.drop_map(*x.shape[1:])[0].cpu().numpy(),
        top_class=top, top_class_names={int(c): model.categories[int(c)] for c in np.unique(top)},
        feature_activation=None if result.feature_activation is None else result.feature_activation.cpu().numpy(),
        feature_channel=result.feature_channel, layer=layer, ys=result.ys, xs=result.xs, window=window)


def _occlusion(model, x, targets, *, engine, progress=None, window, stride, fill, constant, seed, layer, search,
               levels, refine_mass):
    common = dict(window=window, stride=stride, fill=fill, constant=constant, seed=seed, layer=layer or None,
                  engine=engine, progress=progress)
    if search == "coarse_to_fine":
        result = refine_scan(model, x, targets, levels=levels, refine_mass=refine_mass, **common)
    else:
        result = scan(model, x, targets, **common)
    drop = result.drop_map(*x.shape[1:])
    extras = {"per_target_probability_grid": result.probability,
              "per_target_base_probability": result.base_probability,
              "top_class_grid": result.top_class.cpu().numpy(),
              "occluder_ys": result.ys, "occluder_xs": result.xs,
              "forwards": result.forwards, "exhaustive_forwards": 1 + result.grid.size}
    if result.evaluated is not None:
        extras["refined_grid"] = result.evaluated.cpu().numpy()
    if result.feature_activation is not None:
        extras.update(feature_activation_grid=result.feature_activation.cpu().numpy(),
                      feature_channel=result.feature_channel)
    return MethodOutput(maps=drop, attributions=drop.unsqueeze(1).expand(-1, x.shape[0], -1, -1), extras=extras)


OCCLUSION = Method(
    "occlusion", "Occlusion (Zeiler & Fergus)", "perturbation", _occlusion,
    params={"window": Param(int, 16, 1, 1024, help="side of the square occluder, pixels"),
            "stride": Param(int, 8, 1, 1024, help="step between occluder positions, pixels"),
            "fill": Param(str, "grey", choices=REPLACEMENTS, help="what the occluder shows: " + REPLACEMENT_HELP),
            "constant": Param(float, DEFAULT_CONSTANT, 0.0, 1.0, step=0.05, help="grey level of the fill 'constant'"),
            "seed": Param(int, 0, 0, 2**31 - 1, widget="number", help="seed of the fill 'noise'"),
            "layer": Param(str, "", widget="layer", help="layer whose strongest feature map is tracked"),
            "search": Param(str, "exhaustive", choices=SEARCHES,
                            help="every occluder position, or coarse_to_fine: every 2^levels-th position first, the "
                                 "others only next to where it found the drop (interpolated elsewhere)"),
            "levels": Param(int, 1, 1, 4, help="coarse_to_fine: coarser lattices; the first takes every 2^levels-th "
                                                "position per side"),
            "refine_mass": Param(float, 0.7, 0.5, 1.0, step=0.05,
                                 help="coarse_to_fine: share of each level's positive drop refined at the next "
                                      "(1 refines everywhere)")},
    reference="Captum Occlusion (softmax output)",
    uses_layer=True,
    description="Probability drop of the target when a square is occluded, averaged per pixel "
                "(Captum's Occlusion with a softmax output); extras: probability, most probable "
                "class and strongest feature map activation at each occluder position; optionally "
                "coarse-to-fine (extras: forwards used, refined positions).")
