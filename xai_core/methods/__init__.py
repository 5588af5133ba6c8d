"""Explanation methods: ``explain`` runs any registered method on a ``LoadedModel``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from ..engine import Engine, Progress, oom_guard
from ..errors import ParameterError
from ..model_handle import LoadedModel
from .base import FAMILIES, Method, MethodOutput, Param
from .registry import METHODS

__all__ = ["Explanation", "FAMILIES", "METHODS", "Method", "MethodOutput", "Param", "explain", "explain_batch",
           "get_method", "list_methods"]


@dataclass
class Explanation:
    """One method's result for one target, on the host.

    ``map`` is the H×W map the pages draw (unnormalised, in the method's own units);
    ``attribution`` the C×H×W input attribution where the method has one; ``params`` every
    parameter the method ran with (defaults filled in); ``extras`` its diagnostics (e.g. IG's
    ``completeness_gap``, the CAM ``layer``).
    """
    method: str
    target: int
    map: np.ndarray
    attribution: np.ndarray | None
    params: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)


def get_method(name: str) -> Method:
    """The registered method ``name``; ``ParameterError`` listing the known names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ParameterError(f"Unknown method '{name}'; available: {', '.join(METHODS)}.") from None


def list_methods(family: str | None = None) -> list[Method]:
    """Every registered method, in registry order, optionally only those of one ``family``."""
    if family is not None and family not in FAMILIES:
        raise ParameterError(f"Unknown family '{family}'; choose one of {', '.join(FAMILIES)}.")
    return [m for m in METHODS.values() if family is None or m.family == family]


def explain(model: LoadedModel, x: torch.Tensor | Image.Image, method: str,
            targets: Sequence[int | str] | int | str | None = None, params: Mapping[str, Any] | None = None, *,
            engine: Engine | None = None, progress: Progress | None = None) -> list[Explanation]:
    """Explain ``model``'s decision on ``x`` for each target: one ``Explanation`` per target.

    ``x`` is a preprocessed C×H×W tensor or a PIL image (preprocessed with the model's own
    transform). ``targets`` are class indices or names; ``None`` means the predicted class.
    ``params`` are validated against the method's declared ranges (``ParameterError`` if
    impossible); a method with a layer gets ``model.default_layer`` when none is given.
    ``progress(fraction, message)`` is called as batches finish and may raise to stop the work.
    """
    spec = get_method(method)
    if isinstance(x, Image.Image):
        x = model.preprocess(x)
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ParameterError(f"Expected one image tensor C×H×W or a PIL image, got {shape}.")
    parsed = _parsed(spec, model, params)
    with oom_guard(model.device, spec.label):  # what the engine's batches do not cover: single passes
        x = x.to(model.device, torch.float32)
        if targets is None:
            targets = [model.predict(x, 1)[0]["index"]]
        elif isinstance(targets, (int, str, np.integer)):
            targets = [targets]
        target_ids = model.resolve_targets(list(targets))
        if not target_ids:
            raise ParameterError("At least one target class is needed.")
        engine = engine or Engine(model.device)
        out = spec.fn(model, x, target_ids[:1] if spec.class_agnostic else target_ids, engine=engine,
                      progress=progress, **parsed)
    maps = out.maps.detach().float().cpu().numpy()
    attributions = None if out.attributions is None else out.attributions.detach().float().cpu().numpy()
    row = (lambda i: 0) if spec.class_agnostic else (lambda i: i)
    return [Explanation(method=spec.name, target=t, map=maps[row(i)],
                        attribution=None if attributions is None else attributions[row(i)],
                        params=parsed, extras=_per_target(out.extras, row(i)))
            for i, t in enumerate(target_ids)]


def explain_batch(model: LoadedModel, xs: torch.Tensor, method: str, targets: Sequence[Sequence[int | str]],
                  params: Mapping[str, Any] | None = None, *, engine: Engine | None = None,
                  progress: Progress | None = None) -> list[list[Explanation]]:
    """Explain a batch of images ``xs`` (B×C×H×W), each for its own targets (``targets[b]``, one
    list per image, all of the same length): ``result[b][t]``.

    A method that declares a batched function (``Method.batch_fn``) runs all images and items
    (IG steps, masks, noisy copies) through the engine together; the others run image by image.
    Either way the maps equal ``explain`` on each image alone.
    """
    spec = get_method(method)
    if not isinstance(xs, torch.Tensor) or xs.dim() != 4:
        raise ParameterError(f"Expected a batch of images B×C×H×W, got {tuple(getattr(xs, 'shape', ()))}.")
    if len(targets) != len(xs) or len({len(t) for t in targets}) > 1 or not targets or not targets[0]:
        raise ParameterError("Give one non-empty list of targets per image, all of the same length.")
    engine = engine or Engine(model.device)
    if spec.batch_fn is None:
        results = []
        for b, (x, image_targets) in enumerate(zip(xs, targets)):
            step = None if progress is None else (lambda f, m, b=b: progress((b + f) / len(xs), m))
            results.append(explain(model, x, method, list(image_targets), params, engine=engine, progress=step))
        return results
    ids = torch.tensor([model.resolve_targets(list(t)) for t in targets], device=model.device)
    parsed = _parsed(spec, model, params)
    computed = ids[:, :1] if spec.class_agnostic else ids
    with oom_guard(model.device, spec.label):
        out = spec.batch_fn(model, xs.to(model.device, torch.float32), computed, engine=engine, progress=progress,
                            **parsed)
    maps = out.maps.detach().float().cpu().numpy()                       # B×T×H×W
    attributions = None if out.attributions is None else out.attributions.detach().float().cpu().numpy()
    column = (lambda t: 0) if spec.class_agnostic else (lambda t: t)
    return [[Explanation(method=spec.name, target=int(ids[b, t]), map=maps[b, column(t)],
                         attribution=None if attributions is None else attributions[b, column(t)],
                         params=parsed, extras=_per_target(_per_image(out.extras, b), column(t)))
             for t in range(ids.shape[1])] for b in range(len(xs))]


def _parsed(spec: Method, model: LoadedModel, params: Mapping[str, Any] | None) -> dict[str, Any]:
    parsed = spec.parse_params(dict(params or {}))
    if spec.uses_layer and not parsed.get("layer"):
        parsed["layer"] = model.default_layer
    return parsed


def _per_image(extras: dict[str, Any], b: int) -> dict[str, Any]:
    """Batched extras: ``per_target_*`` entries are B×T, split to image ``b``'s T entries."""
    return {k: v[b] if k.startswith("per_target_") else v for k, v in extras.items()}


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
