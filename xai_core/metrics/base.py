"""What a metric is: a function of a batch of maps and their ground truth, its parameters, and the
facts the evaluation runner, the page and the CLI read from the registry.

A metric function has the signature (``MetricFn``)::

    fn(maps: Tensor[B,H,W], truth: GroundTruth, context: MetricContext | None, **params) -> MetricOutput

``maps`` are the explanations as the methods return them (unnormalised, any device); each metric
says in its docstring how it normalises them. Localisation metrics need only the maps and the
ground truth; faithfulness and sanity metrics also need the model, the inputs and the method
(``MetricContext``). Scores are NaN where a metric is undefined (an empty box or mask, a constant
map), never silently 0 or 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol

import torch

from ..methods.base import Param, parse_declared

if TYPE_CHECKING:
    from ..engine import Engine, Progress
    from ..model_handle import LoadedModel

FAMILIES = {
    "localisation": "Localisation",
    "faithfulness": "Faithfulness",
    "sanity": "Sanity checks",
}
"""Metric families and their titles, in the order tables show them."""

NEEDS = ("box", "mask", "model")
"""What a metric may need beyond the maps: object boxes, object masks, the model (with inputs)."""

REGION = "region"
"""The parameter naming which ground truth a localisation metric compares with (box or mask)."""


@dataclass
class GroundTruth:
    """The ground truth of a batch, in model-input coordinates.

    ``boxes``: B×4 integer (x0, y0, x1, y1), x1 and y1 exclusive; ``masks``: B×H×W bool object masks.
    Either may be None when the dataset has none.
    """
    boxes: torch.Tensor | None = None
    masks: torch.Tensor | None = None


@dataclass
class MetricContext:
    """What faithfulness and sanity metrics need besides the maps.

    ``xs`` B×C×H×W are the normalised inputs the maps explain, ``targets`` B (long) the class each
    map explains; ``method`` and ``method_params`` re-create the maps (sanity checks).
    """
    model: LoadedModel
    xs: torch.Tensor
    targets: torch.Tensor
    engine: Engine
    method: str
    method_params: dict[str, Any] = field(default_factory=dict)
    progress: Progress | None = None


@dataclass
class MetricOutput:
    """What a metric returns, on the CPU.

    ``scores`` B float64 (NaN where undefined); ``curves`` B×K where the metric has a curve
    (deletion/insertion probabilities, sanity-check similarity per randomised layer) with
    ``curve_x`` its K abscissae (fractions of pixels, or layer names); ``extras`` anything else.
    """
    scores: torch.Tensor
    curves: torch.Tensor | None = None
    curve_x: list | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class MetricFn(Protocol):
    def __call__(self, maps: torch.Tensor, truth: GroundTruth, context: MetricContext | None,
                 **params: Any) -> MetricOutput: ...


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    ``needs``: what it needs by default (see ``NEEDS``); a metric with a ``region`` parameter
    needs the region its parameters choose instead (``required``). ``higher_is_better``: the
    direction of a good explanation. ``reference``: the implementation it is tested against.
    """
    name: str
    label: str
    family: str
    fn: MetricFn
    params: dict[str, Param] = field(default_factory=dict)
    higher_is_better: bool = True
    needs: frozenset[str] = frozenset()
    reference: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"Metric '{self.name}': unknown family '{self.family}'.")
        if not self.needs <= set(NEEDS):
            raise ValueError(f"Metric '{self.name}': unknown needs {sorted(self.needs - set(NEEDS))}.")

    def parse_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter converted and range-checked, defaults filled in."""
        return parse_declared("Metric", self.name, self.params, given)

    def required(self, parsed: Mapping[str, Any]) -> frozenset[str]:
        """What this metric needs with these (parsed) parameters: the chosen region replaces the default."""
        if REGION not in parsed:
            return self.needs
        return (self.needs - {"box", "mask"}) | {parsed[REGION]}


def region_param(default: str = "box") -> Param:
    """The ``region`` parameter of localisation metrics: the object box or the object mask."""
    return Param(str, default, choices=("box", "mask"), widget="radio",
                 help="compare with the object's bounding box or with its segmentation mask")
