"""Several models on one image: the same class matched by name, one map per model and method, and
how much two models' maps agree.

**Classes by name.** Models trained on different data number their classes differently (ImageNet's
1000, the embedded dataset's 8, a checkpoint's own), so a comparison's class is a *name*.
``match_classes`` keeps every name that all models have, compared case-insensitively, with each
model's index of it. A name a model has twice (ImageNet's "crane", "maillot") is matched by
position when the first model has it at that same index, and left out otherwise: an ambiguous match
would compare two different concepts.

**Agreement** of two maps (one method on two models), both read as "larger = more important":

- Spearman's rank correlation: Pearson's correlation of the pixels' ranks, tied values sharing
  their average rank (as ``scipy.stats.spearmanr``; computed here with numpy, scipy is not a
  dependency). 1 when one map is an increasing function of the other, −1 when a decreasing one; NaN
  when a map is constant (it ranks nothing).
- top-k % overlap: the intersection over union of the k % highest pixels of each map, exactly
  ``round(k % · pixels)`` of them (at least one), ties broken by pixel order (row-major), as
  ``numpy.argsort`` with a stable sort gives them.

Models with different input sizes give maps of different sizes: two maps are compared at the
smaller height and width (bilinear resize, ``render.resize``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import torch

from . import render
from .engine import Engine, oom_guard
from .errors import ParameterError, XAIError
from .methods import explain
from .model_handle import LoadedModel


# ------------------------------------------------------------------------ classes
@dataclass(frozen=True)
class ClassMatch:
    """One class that every compared model has: its name (as the first model spells it) and each model's index."""
    name: str
    indices: tuple[int, ...]


def _folded(name: str) -> str:
    return name.strip().casefold()


def match_classes(categories: Sequence[Sequence[str]]) -> list[ClassMatch]:
    """The classes every model has by name (case-insensitive), in the first model's order.

    ``categories[m]`` is model ``m``'s class names, index = output unit. An empty list means the
    models share no class: they cannot be compared on one.
    """
    if not categories:
        return []
    positions = []  # per model: folded name -> every index carrying it
    for names in categories:
        found: dict[str, list[int]] = {}
        for index, name in enumerate(names):
            found.setdefault(_folded(name), []).append(index)
        positions.append(found)
    matches = []
    for index, name in enumerate(categories[0]):
        key, indices = _folded(name), []
        for found in positions:
            hits = found.get(key, [])
            if len(hits) > 1:
                hits = [index] if index in hits else []
            if len(hits) != 1:
                break
            indices.append(hits[0])
        else:
            matches.append(ClassMatch(name, tuple(indices)))
    return matches


# ---------------------------------------------------------------------- agreement
def average_ranks(values: np.ndarray) -> np.ndarray:
    """The 1-based ranks of ``values`` (flattened), ties sharing their average rank."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each group of equal values
    return (last - (counts - 1) / 2.0)[inverse.ravel()]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps of the same shape; NaN when either is constant."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ParameterError(f"Maps of shapes {a.shape} and {b.shape} cannot be correlated pixel by pixel.")
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / norm) if norm > 0 else float("nan")


def top_pixels(values: np.ndarray, percent: float) -> np.ndarray:
    """Flat indices of the ``percent`` % highest pixels: ``round(percent % · size)`` of them, at least one."""
    if not 0 < percent <= 100:
        raise ParameterError(f"The top-k share must be in (0, 100] %, got {percent}.")
    flat = np.asarray(values, dtype=np.float64).ravel()
    count = max(1, int(round(percent / 100 * flat.size)))
    return np.argsort(-flat, kind="stable")[:count]


def top_k_overlap(a: np.ndarray, b: np.ndarray, percent: float) -> float:
    """Intersection over union of the ``percent`` % highest pixels of two maps of the same shape."""
    if np.shape(a) != np.shape(b):
        raise ParameterError(f"Maps of shapes {np.shape(a)} and {np.shape(b)} cannot be overlapped pixel by pixel.")
    top_a, top_b = top_pixels(a, percent), top_pixels(b, percent)
    shared = np.intersect1d(top_a, top_b, assume_unique=True).size
    return shared / (top_a.size + top_b.size - shared)


def at_common_size(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both maps at the smaller height and width of the two (bilinear; a map already that size is kept)."""
    height, width = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    return render.resize(a, height, width), render.resize(b, height, width)


CONSTANT_MAP = "A map is constant: it ranks no pixel above another."


@dataclass(frozen=True)
class PairAgreement:
    """How two models' maps of one method agree, and a ``note`` where a score is NaN: the method's
    refusal when a map is missing, ``CONSTANT_MAP`` when a map ranks nothing."""
    method: str
    first: int                     # model positions in the comparison
    second: int
    spearman: float
    overlap: float                 # top-k % intersection over union
    note: str = ""


def map_agreement(a: np.ndarray, b: np.ndarray, percent: float) -> tuple[float, float]:
    """(Spearman's ρ, top-``percent`` % overlap) of two maps, compared at their common size."""
    a, b = at_common_size(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32))
    return spearman(a, b), top_k_overlap(a, b, percent)


# ---------------------------------------------------------------------- the grid
class MapSource(Protocol):
    """Where ``compare_models`` gets a map: model ``position``, method, class index, parameters → H×W."""
    def __call__(self, position: int, method: str, target: int, params: Mapping[str, Any]) -> np.ndarray: ...


@dataclass
class Comparison:
    """Models (rows) × methods (columns) for one class: ``maps[row][col]`` (H×W, ``None`` where refused)."""
    class_name: str
    targets: list[int]                        # each model's index of the class
    methods: list[str]
    maps: list[list[np.ndarray | None]]
    refusals: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, col) -> the method's reason

    def agreement(self, percent: float) -> list[PairAgreement]:
        """Every method's agreement for every pair of models (rows in method order, then pair order)."""
        rows = []
        for col, method in enumerate(self.methods):
            for i, j in itertools.combinations(range(len(self.maps)), 2):
                reasons = [self.refusals[(r, col)] for r in (i, j) if (r, col) in self.refusals]
                if reasons:
                    rows.append(PairAgreement(method, i, j, float("nan"), float("nan"), " ".join(reasons)))
                    continue
                rho, overlap = map_agreement(self.maps[i][col], self.maps[j][col], percent)
                rows.append(PairAgreement(method, i, j, rho, overlap, CONSTANT_MAP if np.isnan(rho) else ""))
        return rows


def _explained(models: Sequence[LoadedModel], inputs: Sequence[torch.Tensor], engine: Engine | None) -> MapSource:
    """The default ``MapSource``: ``explain`` of one cell, uncached."""
    def source(position: int, method: str, target: int, params: Mapping[str, Any]) -> np.ndarray:
        return explain(models[position], inputs[position], method, [target], params, engine=engine)[0].map
    return source


def compare_models(models: Sequence[LoadedModel], inputs: Sequence[torch.Tensor], match: ClassMatch,
                   methods: Mapping[str, Mapping[str, Any]], *, maps: MapSource | None = None,
                   engine: Engine | None = None) -> Comparison:
    """Every method on every model for the class ``match`` (from ``match_classes``).

    ``inputs[m]`` is the image preprocessed for ``models[m]`` (C×H×W); ``methods`` maps each method
    name to its parameters. A method that refuses a model (an ``XAIError``: CAM on a network without
    global pooling, Guided Backprop on GELUs..., or a ``ResourceError`` when it does not fit in
    memory) leaves that cell empty with its reason; the others are computed. ``maps`` replaces the computation (the app passes its cache); by default
    ``xai_core.methods.explain`` runs each cell.
    """
    if not len(models) == len(inputs) == len(match.indices):
        raise ValueError(f"{len(models)} models, {len(inputs)} inputs and {len(match.indices)} class indices.")
    source = maps if maps is not None else _explained(models, inputs, engine)
    comparison = Comparison(match.name, list(match.indices), list(methods), [[None] * len(methods) for _ in models])
    for row, target in enumerate(match.indices):
        for col, (method, params) in enumerate(methods.items()):
            try:  # out of memory in any source is that cell's reason too (a ResourceError)
                with oom_guard(models[row].device, f"{method} on model {row + 1}"):
                    comparison.maps[row][col] = source(row, method, target, params)
            except XAIError as err:
                comparison.refusals[(row, col)] = str(err)
    return comparison
