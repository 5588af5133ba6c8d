"""Sanity check: cascading model-parameter randomisation (Adebayo et al., "Sanity checks for
saliency maps", NeurIPS 2018, §3).

The layers of a private deep copy of the model are re-initialised one after another from the top
(output side) down, each time keeping the layers randomised before; after each one the method
explains the same images for the same targets again (``explain_batch`` with the method's
parameters), and the new map is compared with the original one. An explanation that depends on
what the model learnt changes as its layers are destroyed: the similarity should fall (lower is
better). The score is the similarity after the last randomised layer; the curve has one value
per randomised layer, named in ``curve_x``.

As Quantus 0.6.0's ``MPRT`` (``ModelParameterRandomisation``) does:

- the layers are the modules with a ``reset_parameters`` method (convolutions, batch norms, linear
  layers...), in ``named_modules`` order reversed; ``layers`` = N randomises only the top N;
- each is re-initialised by its own ``reset_parameters()`` after ``torch.manual_seed(seed + 1)``
  (default seed 42), here on a CPU copy of the layer inside ``torch.random.fork_rng``, so the
  global random state is untouched and the weights are the same on every device;
- maps are compared as |map| / max |map| (``absolute``, Quantus's abs=True with its
  ``normalise_by_max``), with Spearman's rank correlation or SSIM (``similarity.py``).

Differences of convention (tested in ``tests/test_metrics_quantus.py``): Quantus divides by the
maximum over the whole batch, we divide each map by its own maximum (the same for Spearman, and
for SSIM with a batch of one); Quantus's MPRT flattens the maps before its ``ssim``, which
makes it a one-dimensional SSIM along the raster, where we compute the two-dimensional SSIM of
the maps (Adebayo et al.'s), equal to Quantus's ``ssim`` given the 2-D maps. The shared
``context.model`` is never modified.
"""
from __future__ import annotations

import copy
import dataclasses
import threading

import numpy as np
import torch
from torch import nn

from ..errors import ParameterError
from ..instrument.capture import get_layer
from ..methods import explain_batch
from .base import GroundTruth, Metric, MetricContext, MetricOutput, Param
from .similarity import SIMILARITIES


def randomisable_layers(module: nn.Module) -> list[str]:
    """Names of the modules with their own ``reset_parameters``, from the top (output side) down."""
    return [name for name, m in module.named_modules() if hasattr(m, "reset_parameters")][::-1]


def randomise_layer(layer: nn.Module, seed: int) -> None:
    """Re-initialise ``layer`` in place as ``torch.manual_seed(seed + 1); layer.reset_parameters()`` on the CPU."""
    fresh = copy.deepcopy(layer).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        fresh.reset_parameters()
    layer.load_state_dict(fresh.state_dict())


def comparable(maps: torch.Tensor, absolute: bool) -> torch.Tensor:
    """Maps as they are compared: |map| (if ``absolute``) divided by the map's max |value| (zero maps kept)."""
    maps = maps.to(torch.float64)
    if absolute:
        maps = maps.abs()
    peak = maps.abs().amax(dim=(-2, -1), keepdim=True)
    return maps / torch.where(peak > 0, peak, torch.ones_like(peak))


def _cascading_randomisation(maps: torch.Tensor, truth: GroundTruth, context: MetricContext | None, *,
                             similarity: str, layers: int, seed: int, absolute: bool) -> MetricOutput:
    """B: similarity of the map with the original after the last randomised layer; curves B×layers."""
    if context is None:
        raise ParameterError("The randomisation sanity check needs the model, its inputs and the method.")
    model = context.model
    private = copy.deepcopy(model.module)
    shadow = dataclasses.replace(model, module=private, lock=threading.RLock())
    names = randomisable_layers(private)
    names = names[:layers] if layers else names
    if not names:
        raise ParameterError(f"Model {model.name} has no layer with parameters to randomise.")
    targets = [[int(t)] for t in context.targets]
    original = comparable(maps.detach().cpu(), absolute)
    curves = {name: [] for name in SIMILARITIES}
    for i, name in enumerate(names):
        randomise_layer(get_layer(private, name), seed)
        step = None if context.progress is None else (
            lambda f, m, i=i, name=name: context.progress((i + f) / len(names), f"randomised down to {name}"))
        explanations = explain_batch(shadow, context.xs, context.method, targets, context.method_params,
                                     engine=context.engine, progress=step)
        randomised = comparable(torch.from_numpy(np.stack([e[0].map for e in explanations])), absolute)
        for key, fn in SIMILARITIES.items():
            curves[key].append(fn(original, randomised))
    stacked = {key: torch.stack(values, dim=1) for key, values in curves.items()}
    chosen = stacked[similarity]
    return MetricOutput(scores=chosen[:, -1], curves=chosen, curve_x=names, extras=stacked)


CASCADING_RANDOMISATION = Metric(
    "cascading_randomisation", "Cascading randomisation (sanity check)", "sanity", _cascading_randomisation,
    params={
        "similarity": Param(str, "spearman", choices=tuple(SIMILARITIES), widget="radio",
                            help="Spearman rank correlation or SSIM between the original and the randomised map"),
        "layers": Param(int, 0, 0, 10_000, widget="number",
                        help="randomise only the top N parametrised layers (0: all of them)"),
        "seed": Param(int, 42, 0, 2**31 - 2, widget="number",
                      help="layers are re-initialised after torch.manual_seed(seed + 1), as Quantus does"),
        "absolute": Param(bool, True, widget="checkbox", help="compare absolute maps (Quantus's abs=True)"),
    },
    higher_is_better=False, needs=frozenset({"model"}),
    reference="Adebayo et al. 2018; Quantus MPRT",
    description="Randomise the model's layers from the top down: a map that passes changes (low similarity).")

METRICS: list[Metric] = [CASCADING_RANDOMISATION]
