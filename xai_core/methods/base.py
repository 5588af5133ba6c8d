"""What a method is: a function, its parameters with ranges, and a few facts for the UI.

A method function has the signature::

    fn(model: LoadedModel, x: Tensor[C,H,W] on model.device, targets: list[int],
       *, engine: Engine, progress: Progress | None, **params) -> MethodOutput

and returns one map per target (computed from shared forward passes where the method
allows). It never moves intermediate results to the host; ``explain`` does that once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..errors import ParameterError


@dataclass(frozen=True)
class Param:
    """One tunable parameter. ``kind`` is int, float, str or bool; ``choices`` for str."""
    kind: type
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    help: str = ""

    def parse(self, name: str, value: Any) -> Any:
        """Convert (from CLI text or widget value) and range-check; ParameterError if impossible."""
        try:
            if self.kind is bool:
                v = value if isinstance(value, bool) else str(value).strip().lower() in {"1", "true", "yes", "on"}
            elif self.kind is int and isinstance(value, str):
                v = int(float(value)) if float(value).is_integer() else int(value)
            else:
                v = self.kind(value)
        except (TypeError, ValueError):
            raise ParameterError(f"Parameter '{name}' must be {self.kind.__name__}, got '{value}'.") from None
        if self.choices is not None and v not in self.choices:
            raise ParameterError(f"Parameter '{name}' must be one of {', '.join(self.choices)}; got '{v}'.")
        if self.low is not None and v < self.low or self.high is not None and v > self.high:
            raise ParameterError(f"Parameter '{name}' = {v} is outside [{self.low}, {self.high}].")
        return v


@dataclass
class MethodOutput:
    maps: torch.Tensor                       # T×H×W, one per target, on the device
    attributions: torch.Tensor | None = None  # T×C×H×W where the method has one
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. completeness gap, layer used


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    family: str                    # "gradient", "cam", "perturbation", "path"
    fn: Callable[..., MethodOutput]
    params: dict[str, Param] = field(default_factory=dict)
    uses_layer: bool = False       # has a ``layer`` parameter defaulting to model.default_layer
    description: str = ""

    def parse_params(self, given: dict[str, Any]) -> dict[str, Any]:
        unknown = set(given) - set(self.params)
        if unknown:
            known = ", ".join(sorted(self.params)) or "none"
            raise ParameterError(f"Method '{self.name}' has no parameter {', '.join(sorted(unknown))} "
                                 f"(it takes: {known}).")
        return {k: p.parse(k, given.get(k, p.default)) for k, p in self.params.items()}
