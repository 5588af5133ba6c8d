"""What a method is: a function, its parameters with ranges, and the facts the UI, the CLI,
the README table and the contract tests read from the registry.

A method function has the signature (``MethodFn``)::

    fn(model: LoadedModel, x: Tensor[C,H,W] on model.device, targets: list[int],
       *, engine: Engine, progress: Progress | None, **params) -> MethodOutput

and returns one map per target (computed from shared forward passes where the method
allows). It never moves intermediate results to the host; ``explain`` does that once.

A gradient method may also give its batched input attribution (``Attribute``)::

    attribute(model, xs: Tensor[B,C,H,W], targets, *, engine, **params) -> Tensor[T,B,C,H,W]

with ``to_map`` reducing T×B×C×H×W to T×B×H×W; such a method can be composed with the noise
tunnel (SmoothGrad over it) and gets its ``fn`` built from these two.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import torch

from ..errors import ParameterError

if TYPE_CHECKING:
    from ..engine import Engine, Progress
    from ..model_handle import LoadedModel

WIDGETS = ("auto", "slider", "log_slider", "number", "select", "radio", "checkbox", "text", "layer")
"""How a parameter prefers to be drawn; ``auto`` picks from its kind, range and choices."""

FAMILIES = {
    "gradient": "Gradients",
    "cam": "Class activation maps",
    "path": "Path integrals",
    "perturbation": "Perturbations",
    "attention": "Attention",
}
"""Method families and their titles, in the order pages and the README show them."""


@dataclass(frozen=True)
class Param:
    """One tunable parameter: its kind, default, allowed range or choices, and how to draw it.

    ``kind`` is int, float, str or bool; ``choices`` restricts a str; ``low``/``high`` bound a
    number (inclusive). ``widget`` is the preferred widget (see ``WIDGETS``), ``step`` its
    increment, ``label`` a short title (default: the name).
    """
    kind: type
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    help: str = ""
    widget: str = "auto"
    step: float | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if self.widget not in WIDGETS:
            raise ValueError(f"Unknown widget '{self.widget}'; choose one of {', '.join(WIDGETS)}.")
        if self.widget == "log_slider" and not (self.low and self.low > 0):
            raise ValueError("A log-scale widget needs a positive lower bound.")

    def parse(self, name: str, value: Any) -> Any:
        """Convert (from CLI text or widget value) and range-check; ParameterError if impossible."""
        try:
            if self.kind is bool:
                v = value if isinstance(value, bool) else str(value).strip().lower() in {"1", "true", "yes", "on"}
            elif self.kind is int and isinstance(value, str):
                v = int(float(value)) if float(value).is_integer() else int(value)
            elif self.kind is int and isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                v = int(value)
            else:
                v = self.kind(value)
        except (TypeError, ValueError, OverflowError):
            raise ParameterError(f"Parameter '{name}' must be {self.kind.__name__}, got '{value}'.") from None
        if self.kind is float and not math.isfinite(v):
            raise ParameterError(f"Parameter '{name}' must be a finite number, got {v}.")
        if self.choices is not None and v not in self.choices:
            raise ParameterError(f"Parameter '{name}' must be one of {', '.join(self.choices)}; got '{v}'.")
        if self.low is not None and v < self.low or self.high is not None and v > self.high:
            raise ParameterError(f"Parameter '{name}' = {v} is outside [{self.low}, {self.high}].")
        return v

    def describe(self) -> str:
        """One line for ``--help`` and the README: range or choices, and the default."""
        if self.choices is not None:
            allowed = "|".join(self.choices)
        elif self.low is not None or self.high is not None:
            allowed = f"{self.low:g}..{self.high:g}" if self.kind is float else f"{self.low}..{self.high}"
        else:
            allowed = self.kind.__name__
        default = "model default" if self.widget == "layer" else repr(self.default)
        return f"{allowed} (default {default})"


@dataclass
class MethodOutput:
    """What a method function returns, on the device; ``explain`` moves it to the host."""
    maps: torch.Tensor                       # T×H×W, one per target (1×H×W for a class-agnostic method)
    attributions: torch.Tensor | None = None  # T×C×H×W where the method has one
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. completeness gap, layer used


class MethodFn(Protocol):
    def __call__(self, model: LoadedModel, x: torch.Tensor, targets: list[int], *, engine: Engine,
                 progress: Progress | None = None, **params: Any) -> MethodOutput: ...


class BatchFn(Protocol):
    """A batch of images B×C×H×W, each with its own targets (B×T class indices, on the device):
    maps B×T×H×W, attributions B×T×C×H×W, ``per_target_*`` extras B×T."""
    def __call__(self, model: LoadedModel, xs: torch.Tensor, targets: torch.Tensor, *, engine: Engine,
                 progress: Progress | None = None, **params: Any) -> MethodOutput: ...


class Attribute(Protocol):
    def __call__(self, model: LoadedModel, xs: torch.Tensor, targets: list[int], *, engine: Engine,
                 **params: Any) -> torch.Tensor: ...


BASE_PREFIX = "base."
"""Parameters of a composed method's base are given as ``base.NAME`` (CLI, widgets)."""


@dataclass(frozen=True)
class Method:
    """A registered explanation method.

    ``uses_layer``: has a ``layer`` parameter defaulting to ``model.default_layer``.
    ``class_agnostic``: one map whatever the target (``explain`` repeats it per target).
    ``attribute``/``to_map``: its batched input attribution (composable with the noise tunnel).
    ``bases``: for a composing method (the noise tunnel), the methods it can wrap; its ``base``
    parameter names one, and ``base.NAME`` parameters go to that method.
    ``reference``: the implementation it is tested against, for the README table.
    ``batch_fn``: its batched form over images (``explain_batch``), where it has one.
    """
    name: str
    label: str
    family: str
    fn: MethodFn
    params: dict[str, Param] = field(default_factory=dict)
    uses_layer: bool = False
    class_agnostic: bool = False
    description: str = ""
    reference: str = ""
    attribute: Attribute | None = None
    to_map: Callable[[torch.Tensor], torch.Tensor] | None = None
    bases: Mapping[str, "Method"] | None = None
    batch_fn: BatchFn | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"Method '{self.name}': unknown family '{self.family}'.")
        if (self.attribute is None) != (self.to_map is None):
            raise ValueError(f"Method '{self.name}': attribute and to_map go together.")

    @property
    def composable(self) -> bool:
        """Whether the noise tunnel can wrap this method."""
        return self.attribute is not None

    def base_method(self, parsed: Mapping[str, Any]) -> "Method":
        assert self.bases is not None
        return self.bases[parsed["base"]]

    def parse_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter converted and range-checked, defaults filled in.

        A composing method also gets ``base_params``: its base method's parsed parameters.
        """
        own = {k: v for k, v in given.items() if not k.startswith(BASE_PREFIX)}
        for_base = {k[len(BASE_PREFIX):]: v for k, v in given.items() if k.startswith(BASE_PREFIX)}
        stray = [] if self.bases is not None else sorted(BASE_PREFIX + k for k in for_base)
        parsed = parse_declared("Method", self.name, self.params, own, also_unknown=stray)
        if self.bases is not None:
            parsed["base_params"] = self.base_method(parsed).parse_params(for_base)
        return parsed


def parse_declared(kind: str, name: str, params: Mapping[str, Param], given: Mapping[str, Any], *,
                   also_unknown: Sequence[str] = ()) -> dict[str, Any]:
    """``given`` checked against the declared ``params`` (methods and metrics alike): an unknown
    name is refused with the list of known ones, every value parsed, defaults filled in."""
    wrong = sorted(set(given) - set(params)) + list(also_unknown)
    if wrong:
        known = ", ".join(sorted(params)) or "none"
        raise ParameterError(f"{kind} '{name}' has no parameter {', '.join(wrong)} (it takes: {known}).")
    return {k: p.parse(k, given.get(k, p.default)) for k, p in params.items()}


# ------------------------------------------------------------- attribution methods
def max_abs_over_channels(attributions: torch.Tensor) -> torch.Tensor:
    """…×C×H×W → …×H×W: the largest absolute value over colour channels (saliency's map)."""
    return attributions.abs().amax(dim=-3)


def sum_over_channels(attributions: torch.Tensor) -> torch.Tensor:
    """…×C×H×W → …×H×W: the channel sum, sign kept."""
    return attributions.sum(dim=-3)


def attribution_method(name: str, label: str, family: str, attribute: Attribute,
                       to_map: Callable[[torch.Tensor], torch.Tensor], **facts: Any) -> Method:
    """A method whose map is ``to_map`` of its input attribution; batched over images through the
    engine (each image with its own targets), the single image being a batch of one."""
    def explain_many(model, xs, targets, *, engine, progress=None, **params):
        def batch(start: int, stop: int) -> torch.Tensor:
            return attribute(model, xs[start:stop], targets[start:stop], engine=engine, **params).transpose(0, 1)

        attributions = engine.map_cat(batch, len(xs), section="gradients",
                                      key=f"{name}:images:{model.name}:{tuple(xs.shape[1:])}",
                                      progress=progress, message=f"{label}: images")      # B×T×C×H×W
        return MethodOutput(maps=to_map(attributions), attributions=attributions)

    def explain_one(model, x, targets, *, engine, progress=None, **params):
        rows = torch.as_tensor([list(targets)], device=x.device)
        out = explain_many(model, x.unsqueeze(0), rows, engine=engine, progress=progress, **params)
        return MethodOutput(maps=out.maps[0], attributions=out.attributions[0])

    return Method(name, label, family, explain_one, attribute=attribute, to_map=to_map, batch_fn=explain_many,
                  **facts)
