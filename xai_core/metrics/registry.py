"""All metrics by name, and ``compute``, the one way to run one: it checks the parameters, what the
metric needs, and the shapes, then calls the metric function. A new metric is a function in its
family's module plus its ``Metric`` in that module's ``METRICS`` list.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..errors import ParameterError
from . import faithfulness, localisation, sanity
from .base import FAMILIES, GroundTruth, Metric, MetricContext, MetricOutput

METRICS: dict[str, Metric] = {m.name: m for m in (*localisation.METRICS, *faithfulness.METRICS, *sanity.METRICS)}


def get_metric(name: str) -> Metric:
    """The registered metric ``name``; ``ParameterError`` listing the known names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ParameterError(f"Unknown metric '{name}'; available: {', '.join(METRICS)}.") from None


def list_metrics(family: str | None = None) -> list[Metric]:
    """Every registered metric, in registry order, optionally only those of one ``family``."""
    if family is not None and family not in FAMILIES:
        raise ParameterError(f"Unknown metric family '{family}'; choose one of {', '.join(FAMILIES)}.")
    return [m for m in METRICS.values() if family is None or m.family == family]


def compute(name: str, maps: torch.Tensor, truth: GroundTruth | None = None, context: MetricContext | None = None,
            params: Mapping[str, Any] | None = None) -> MetricOutput:
    """Score a batch of maps B×H×W with metric ``name``: one score per map (NaN where undefined).

    ``params`` are validated against the metric's declared ranges; ``ParameterError`` when the
    metric needs a box, a mask or the model that ``truth``/``context`` do not give, or when the
    shapes disagree.
    """
    metric = get_metric(name)
    parsed = metric.parse_params(dict(params or {}))
    truth = truth or GroundTruth()
    _check(metric, metric.required(parsed), maps, truth, context)
    return metric.fn(maps, truth, context, **parsed)


def _check(metric: Metric, needs: frozenset[str], maps: torch.Tensor, truth: GroundTruth,
           context: MetricContext | None) -> None:
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3 or 0 in maps.shape:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ParameterError(f"Metric '{metric.name}' expects a batch of maps B×H×W, got {shape}.")
    batch, height, width = maps.shape
    given = {"box": truth.boxes, "mask": truth.masks, "model": context}
    missing = [need for need in sorted(needs) if given[need] is None]
    if missing:
        what = {"box": "object boxes", "mask": "object masks", "model": "the model and its inputs"}
        raise ParameterError(f"Metric '{metric.name}' needs {' and '.join(what[m] for m in missing)}, "
                             "which were not given.")
    if "box" in needs and tuple(truth.boxes.shape) != (batch, 4):
        raise ParameterError(f"Expected {batch} boxes (x0, y0, x1, y1), got shape {tuple(truth.boxes.shape)}.")
    if "mask" in needs and tuple(truth.masks.shape) != (batch, height, width):
        raise ParameterError(f"Expected {batch} masks of {height}×{width} like the maps, "
                             f"got shape {tuple(truth.masks.shape)}.")
    if "model" in needs:
        xs = context.xs
        if xs.dim() != 4 or len(xs) != batch or tuple(xs.shape[-2:]) != (height, width):
            raise ParameterError(f"Expected {batch} inputs of {height}×{width} like the maps, "
                                 f"got shape {tuple(xs.shape)}.")
        if tuple(context.targets.shape) != (batch,):
            raise ParameterError(f"Expected one target per map ({batch}), got shape {tuple(context.targets.shape)}.")
