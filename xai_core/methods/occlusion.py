"""Occlusion sensitivity (Zeiler & Fergus 2014): slide a square occluder over the image.

Every occluder position is one item of the engine's batches. The occluder grid is Captum's
``Occlusion`` grid (window ``w``, stride ``s``: ``ceil((H − w) / s) + 1`` positions per axis,
starting at multiples of ``s``, the last windows cut at the border), so the per-pixel map
— the target's probability drop ``p(x) − p(x_occluded)`` averaged over the windows covering
each pixel — equals Captum's attribution with a softmax forward. Per position, the same
forward passes also give (a) the target's probability, (b) the most probable class and
(c) the total activation of the layer's strongest feature map (strongest on the intact
image), the three maps of Zeiler & Fergus's figure 7.
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


@dataclass
class OcclusionScan:
    """Per-position results on the device; grids are Py×Px (rows follow ``ys``, columns ``xs``)."""
    ys: list[int]
    xs: list[int]
    window: int
    stride: int
    base_probability: torch.Tensor   # T, target probabilities on the intact image
    probability: torch.Tensor        # T×Py×Px, target probability with the occluder at each position
    top_class: torch.Tensor          # Py×Px, most probable class at each position
    feature_channel: int | None      # strongest feature map of the layer on the intact image
    feature_activation: torch.Tensor | None  # Py×Px, its total activation at each position

    def drop_map(self, height: int, width: int) -> torch.Tensor:
        """T×H×W: probability drop averaged over the windows covering each pixel (= Captum)."""
        drop = self.base_probability.view(-1, 1, 1) - self.probability
        t, w, s = drop.shape[0], self.window, self.stride
        out = (self.ys[-1] + w, self.xs[-1] + w)  # the last windows may pass the border
        patches = drop.reshape(t, 1, -1).expand(t, w * w, -1)
        total = F.fold(patches, out, kernel_size=w, stride=s)[:, 0, :height, :width]
        count = F.fold(torch.ones_like(patches[:1]), out, kernel_size=w, stride=s)[:, 0, :height, :width]
        return total / count


def scan(model: LoadedModel, x: torch.Tensor, targets: list[int], *, window: int, stride: int, fill: str,
         constant: float = DEFAULT_CONSTANT, seed: int = 0, layer: str | None = None, engine: Engine | None = None, progress: Progress | None = None) -> OcclusionScan:
    """Evaluate every occluder position in batches (one forward pass per position)."""
    _, height, width = x.shape
    if not 1 <= window <= min(height, width):
        raise ParameterError(f"The occluder window must be between 1 and {min(height, width)} pixels; got {window}.")
    if not 1 <= stride <= window:
        raise ParameterError(f"The occluder stride must be between 1 and the window ({window} pixels); got {stride}.")
    engine = engine or Engine(model.device)
    x = x.to(model.device, torch.float32)
    baseline = replacement_image(model, x, fill, value=constant, seed=seed)
    ys, xs = occluder_starts(height, window, stride), occluder_starts(width, window, stride)
    tops = torch.tensor([y for y in ys for _ in xs], device=x.device)
    lefts = torch.tensor([c for _ in ys for c in xs], device=x.device)
    rows, cols = torch.arange(height, device=x.device), torch.arange(width, device=x.device)
    target_index = torch.as_tensor(targets, device=x.device)

    def forward(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        # fp32 even inside ``map``: the map is a difference of probabilities, often small.
        with engine.precision("score_difference"):
            if layer is None:
                return model.module(batch).float(), None
            with capture(model.module, layer, detach=True) as seen:
                logits = model.module(batch).float()
        return logits, seen.feature_map().float()

    with torch.no_grad():
        logits, activation = forward(x.unsqueeze(0))
    base_probability = logits.softmax(-1)[0, target_index]
    channel = None if activation is None else int(activation[0].sum(dim=(1, 2)).argmax())

    @torch.no_grad()
    def occluded(start: int, stop: int) -> torch.Tensor:
        top, left = tops[start:stop].view(-1, 1, 1), lefts[start:stop].view(-1, 1, 1)
        inside = ((rows.view(1, -1, 1) >= top) & (rows.view(1, -1, 1) < top + window)
                  & (cols.view(1, 1, -1) >= left) & (cols.view(1, 1, -1) < left + window)).unsqueeze(1)
        batch = torch.where(inside, baseline.unsqueeze(0), x.unsqueeze(0))
        logits, activation = forward(batch)
        probs = logits.softmax(-1)
        columns = [probs[:, target_index], probs.argmax(-1, keepdim=True).float()]
        if activation is not None:
            columns.append(activation[:, channel].sum(dim=(1, 2)).unsqueeze(1))
        return torch.cat(columns, dim=1)

    per_position = engine.map_cat(occluded, len(ys) * len(xs), section="score_difference", key=f"occlusion:{model.name}:{height}",
                                  item_bytes=x.numel() * 4 * 8, progress=progress, message="occluding")
    grid = (len(ys), len(xs))
    t = len(targets)
    return OcclusionScan(
        ys=ys, xs=xs, window=window, stride=stride, base_probability=base_probability,
        probability=per_position[:, :t].T.reshape(t, *grid), top_class=per_position[:, t].long().reshape(grid),
        feature_channel=channel,
        feature_activation=None if activation is None else per_position[:, t + 1].reshape(grid))


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


def _occlusion(model, x, targets, *, engine, progress=None, window, stride, fill, constant, seed, layer):
    result = scan(model, x, targets, window=window, stride=stride, fill=fill, constant=constant, seed=seed,
                  layer=layer or None,
                  engine=engine, progress=progress)
    drop = result.drop_map(*x.shape[1:])
    extras = {"per_target_probability_grid": result.probability,
              "per_target_base_probability": result.base_probability,
              "top_class_grid": result.top_class.cpu().numpy(),
              "occluder_ys": result.ys, "occluder_xs": result.xs}
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
            "layer": Param(str, "", widget="layer", help="layer whose strongest feature map is tracked")},
    reference="Captum Occlusion (softmax output)",
    uses_layer=True,
    description="Probability drop of the target when a square is occluded, averaged per pixel "
                "(Captum's Occlusion with a softmax output); extras: probability, most probable "
                "class and strongest feature map activation at each occluder position.")
