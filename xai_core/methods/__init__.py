"""Explanation methods: ``explain`` runs any registered method on a ``LoadedModel``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..engine import Engine, Progress
from ..errors import ParameterError
from ..model_handle import LoadedModel
from .base import Method, MethodOutput, Param
from .registry import METHODS

__all__ = ["Explanation", "METHODS", "Method", "MethodOutput", "Param", "explain", "get_method"]


@dataclass
class Explanation:
    """One method's result for one target, on the host."""
    method: str
    target: int
    map: np.ndarray                      # H×W float32
    attribution: np.ndarray | None       # C×H×W float32, where the method has one
    params: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ParameterError(f"Unknown method '{name}'; available: {', '.join(METHODS)}.") from None


def explain(model: LoadedModel, x: torch.Tensor, method: str, targets: Sequence[int | str] | int | str,
            params: dict[str, Any] | None = None, *, engine: Engine | None = None,
            progress: Progress | None = None) -> list[Explanation]:
    """Explain ``model``'s decision on the preprocessed input ``x`` (C×H×W) for each target.

    ``params`` are validated against the method's declared ranges (``ParameterError`` if
    impossible); a method with a layer gets ``model.default_layer`` when none is given.
    """
    spec = get_method(method)
    if isinstance(targets, (int, str, np.integer)):
        targets = [targets]
    target_ids = model.resolve_targets(list(targets))
    if not target_ids:
        raise ParameterError("At least one target class is needed.")
    parsed = spec.parse_params(dict(params or {}))
    if spec.uses_layer and not parsed.get("layer"):
        parsed["layer"] = model.default_layer
    if x.dim() != 3:
        raise ParameterError(f"Expected one image tensor C×H×W, got shape {tuple(x.shape)}.")
    engine = engine or Engine(model.device)
    x = x.to(model.device, torch.float32)
    out = spec.fn(model, x, target_ids, engine=engine, progress=progress, **parsed)
    maps = out.maps.detach().float().cpu().numpy()
    attributions = None if out.attributions is None else out.attributions.detach().float().cpu().numpy()
    return [Explanation(method=spec.name, target=t, map=maps[i],
                        attribution=None if attributions is None else attributions[i],
                        params=parsed, extras=_per_target(out.extras, i))
            for i, t in enumerate(target_ids)]


def _per_target(extras: dict[str, Any], i: int) -> dict[str, Any]:
    """Extras given per target (a list or tensor with one entry per target) are split."""
    result = {}
    for key, value in extras.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().float().cpu().numpy()
        if isinstance(value, (list, np.ndarray)) and key.startswith("per_target_"):
            result[key.removeprefix("per_target_")] = value[i]
        else:
            result[key] = value
    return result
