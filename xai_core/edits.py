"""What if: edit the input image and see what the model does (issue 17).

An **edit** is a region of the input, a mode and a replacement (``xai_core.replacements``):

- the region is a ``Box``, a ``Polygon`` (a lasso), a set of grid ``Cells`` or the top k % of a
  named map (``TopK``); coordinates are input pixels, pixel (row r, column c) centred at
  (x = c, y = r), as plotly draws an image, so a selection on the page is a region as it comes;
- ``remove`` replaces the region, ``keep`` replaces everything else.

Edits apply in order: x₀ = x, xᵢ₊₁ = xᵢ · keepᵢ + Rᵢ(xᵢ) · (1 − keepᵢ) (``replacements.replace``),
Rᵢ the replacement image of xᵢ. "Remove the top k %" of a map is the deletion step of the
faithfulness metrics at n = ⌊k·H·W / 100⌋ pixels (the same ranking, ``saliency_ranks``); "keep only the
top k %" is the insertion step, so the curve over k is ``probability_curves`` itself.

``prediction_change`` is the RIG paper's occlusion table for any region: for the union of the top
k classes before and after, the pre-softmax logit z and the probability p before and after and
Δz = z' − z, Δp = p' − p. ``pixel_report`` gives, for one pixel, its value in each map and its
percentile (the share of the map's pixels with a smaller value, ties counted half). An edit list
travels as JSON (``edits_to_json``/``edits_from_json``): untrusted text, refused with a
``ParameterError`` naming what is wrong.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw

from .errors import ParameterError
from .methods.base import Param, parse_declared
from .metrics.base import MetricContext
from .metrics.faithfulness import probability_curves, saliency_ranks
from .replacements import DEFAULT_CONSTANT, REPLACEMENTS, replace, replacement_image
from .replacements import HELP as REPLACEMENT_HELP

if TYPE_CHECKING:
    from .engine import Engine
    from .model_handle import LoadedModel

MODES = ("remove", "keep")
MAX_SIDE = 4096
"""Coordinates beyond this many pixels are refused: no model here takes a larger input."""
MAX_POINTS = 256
"""The most vertices of a polygon and cells of a cell set an edit list may hold."""

EDIT_PARAMS: dict[str, Param] = {
    "mode": Param(str, "remove", choices=MODES, widget="radio",
                  help="remove: replace the region; keep: replace everything but the region"),
    "replacement": Param(str, "black", choices=REPLACEMENTS, help=f"what replaces a pixel: {REPLACEMENT_HELP}"),
    "constant": Param(float, DEFAULT_CONSTANT, 0.0, 1.0, step=0.05, help="grey level of the 'constant' replacement"),
    "seed": Param(int, 0, 0, 2**31 - 1, widget="number", help="seed of the 'noise' replacement"),
}
"""The parameters of every edit (widgets, JSON validation)."""
CELL_PARAM = Param(int, 8, 1, 64, help="side of a click-to-toggle grid cell, in input pixels")
K_PARAM = Param(float, 10.0, 0.0, 100.0, step=1.0, help="share of the map's pixels, most salient first (k %)")


# ------------------------------------------------------------------------ regions
def _coordinate(value: Any, what: str) -> float:
    number = Param(float, 0.0, -MAX_SIDE, MAX_SIDE).parse(what, value)
    return round(number, 1)


@dataclass(frozen=True)
class Box:
    """Pixels whose centres lie in [x0, x1] × [y0, y1]."""
    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        if not (self.x0 <= self.x1 and self.y0 <= self.y1):
            raise ParameterError(f"A box needs x0 ≤ x1 and y0 ≤ y1; got {self.to_json()}.")

    def mask(self, height: int, width: int, maps: Mapping[str, np.ndarray]) -> np.ndarray:
        cols, rows = np.arange(width), np.arange(height)
        inside_x = (cols >= self.x0) & (cols <= self.x1)
        inside_y = (rows >= self.y0) & (rows <= self.y1)
        return inside_y[:, None] & inside_x[None, :]

    def to_json(self) -> dict:
        return {"box": [self.x0, self.y0, self.x1, self.y1]}


@dataclass(frozen=True)
class Polygon:
    """The pixels a polygon (a lasso) covers, rasterised by PIL (centres inside or on the outline)."""
    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not 3 <= len(self.points) <= MAX_POINTS:
            raise ParameterError(f"A polygon needs 3 to {MAX_POINTS} points; got {len(self.points)}.")

    def mask(self, height: int, width: int, maps: Mapping[str, np.ndarray]) -> np.ndarray:
        canvas = Image.new("1", (width, height), 0)
        ImageDraw.Draw(canvas).polygon(list(self.points), fill=1, outline=1)
        return np.asarray(canvas, dtype=bool)

    def to_json(self) -> dict:
        return {"polygon": [list(p) for p in self.points]}


@dataclass(frozen=True)
class Cells:
    """Grid cells of ``cell`` × ``cell`` pixels, each (row, column) in cell units."""
    cells: frozenset[tuple[int, int]]
    cell: int = CELL_PARAM.default

    def toggled(self, row: int, col: int) -> "Cells":
        """This set with the cell (row, col) added, or removed when it was in."""
        return Cells(self.cells ^ {(row, col)}, self.cell)

    def mask(self, height: int, width: int, maps: Mapping[str, np.ndarray]) -> np.ndarray:
        mask = np.zeros((height, width), dtype=bool)
        for row, col in self.cells:
            mask[row * self.cell:(row + 1) * self.cell, col * self.cell:(col + 1) * self.cell] = True
        return mask

    def to_json(self) -> dict:
        return {"cells": sorted([r, c] for r, c in self.cells), "cell": self.cell}


@dataclass(frozen=True)
class TopK:
    """The top ``k_percent`` % of the map named ``source`` (most salient first, ties in raster order)."""
    source: str
    k_percent: float

    def mask(self, height: int, width: int, maps: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.source not in maps:
            raise ParameterError(f"The edit needs the map '{self.source}', which is not on the page "
                                 f"(maps: {', '.join(maps) or 'none'}).")
        heatmap = np.asarray(maps[self.source], dtype=np.float32)
        if heatmap.shape != (height, width):
            raise ParameterError(f"The map '{self.source}' is {heatmap.shape[0]}×{heatmap.shape[1]}, "
                                 f"not the image's {height}×{width}.")
        return topk_region(heatmap, self.k_percent)

    def to_json(self) -> dict:
        return {"top_k": self.k_percent, "map": self.source}


Region = Union[Box, Polygon, Cells, TopK]


@dataclass(frozen=True)
class Edit:
    """One edit: a region, what happens to it (``mode``) and what replaces the pixels."""
    region: Region
    mode: str = "remove"
    replacement: str = "black"
    constant: float = DEFAULT_CONSTANT
    seed: int = 0

    def __post_init__(self) -> None:
        given = {"mode": self.mode, "replacement": self.replacement, "constant": self.constant, "seed": self.seed}
        for name, value in parse_declared("Edit", self.region_kind, EDIT_PARAMS, given).items():
            object.__setattr__(self, name, value)  # the parsed value (a link's "3" becomes 3)

    @property
    def region_kind(self) -> str:
        return type(self.region).__name__.lower()

    def to_json(self) -> dict:
        changed = {name: getattr(self, name) for name, p in EDIT_PARAMS.items() if getattr(self, name) != p.default}
        return self.region.to_json() | changed


def topk_region(heatmap: np.ndarray | torch.Tensor, k_percent: float) -> np.ndarray:
    """H×W bool: the ⌊k·H·W / 100⌋ most salient pixels of the map (the deletion metric's order)."""
    k_percent = K_PARAM.parse("k_percent", k_percent)
    values = torch.from_numpy(np.array(heatmap, dtype=np.float32))
    count = int(k_percent * values.numel() // 100)
    return (saliency_ranks(values[None])[0] < count).numpy()


def region_mask(edits: Sequence[Edit], height: int, width: int,
                maps: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """H×W bool: the union of the edits' regions (what the user drew, whatever the modes)."""
    mask = np.zeros((height, width), dtype=bool)
    for edit in edits:
        mask |= edit.region.mask(height, width, maps or {})
    return mask


def apply_edits(model: LoadedModel, x: torch.Tensor, edits: Sequence[Edit],
                maps: Mapping[str, np.ndarray] | None = None) -> torch.Tensor:
    """The normalised image ``x`` (C×H×W) with ``edits`` applied in order (a new tensor, x's device)."""
    height, width = x.shape[-2:]
    edited = x
    for edit in edits:
        region = torch.from_numpy(edit.region.mask(height, width, maps or {})).to(x.device, x.dtype)
        keep = 1 - region if edit.mode == "remove" else region
        fill = replacement_image(model, edited, edit.replacement, value=edit.constant, seed=edit.seed)
        edited = replace(edited, keep, fill)
    return edited.clone() if edited is x else edited


def region_from_selection(selection: Mapping[str, Any], max_points: int = 24) -> Box | Polygon | None:
    """The region of a plotly selection event (streamlit's ``selection``: ``box`` with x/y ranges, ``lasso``
    with x/y lists), the last drawn; a lasso keeps at most ``max_points`` of its vertices (evenly spaced),
    so that an edit list fits in a link. None when it holds neither."""
    for kind in ("lasso", "box"):
        shapes = selection.get(kind) or []
        if not shapes:
            continue
        xs, ys = shapes[-1]["x"], shapes[-1]["y"]
        if kind == "box":
            return Box(_coordinate(min(xs), "box"), _coordinate(min(ys), "box"),
                       _coordinate(max(xs), "box"), _coordinate(max(ys), "box"))
        keep = np.unique(np.linspace(0, len(xs) - 1, min(len(xs), max_points)).round().astype(int))
        return Polygon(tuple((_coordinate(xs[i], "lasso"), _coordinate(ys[i], "lasso")) for i in keep))
    return None


# --------------------------------------------------------------------- predictions
@torch.no_grad()
def prediction_change(model: LoadedModel, x: torch.Tensor, x_edited: torch.Tensor, k: int = 5) -> list[dict]:
    """Rows for the union of the top-``k`` classes before and after the edit (before's order, then the
    newcomers): index, name, rank before/after (1 = top), logit and probability before/after and their
    changes. One forward pass of the two images."""
    with model.lock:
        logits = model.module(torch.stack([x, x_edited]).to(model.device, torch.float32)).float().cpu()
    probabilities = logits.softmax(dim=-1)
    order = logits.argsort(dim=-1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(logits.shape[1]).expand_as(order))
    classes = list(dict.fromkeys(order[0, :k].tolist() + order[1, :k].tolist()))
    rows = []
    for c in classes:
        (z0, z1), (p0, p1) = logits[:, c].tolist(), probabilities[:, c].tolist()
        rows.append({"index": c, "name": model.categories[c], "rank_before": int(ranks[0, c]) + 1,
                     "rank_after": int(ranks[1, c]) + 1, "logit_before": z0, "logit_after": z1,
                     "logit_change": z1 - z0, "probability_before": p0, "probability_after": p1,
                     "probability_change": p1 - p0})
    return rows


def topk_curve(model: LoadedModel, x: torch.Tensor, heatmap: np.ndarray, target: int, *, mode: str,
               replacement: str, engine: Engine, steps: int = 20, constant: float = DEFAULT_CONSTANT,
               seed: int = 0) -> np.ndarray:
    """(steps+1): the target's probability with the top k % of the map removed (``mode='remove'``:
    the deletion curve) or kept alone (``'keep'``: the insertion curve), k = 100·j / steps."""
    mode = EDIT_PARAMS["mode"].parse("mode", mode)
    context = MetricContext(model=model, xs=x[None], targets=torch.tensor([target]), engine=engine, method="")
    curves = probability_curves(torch.from_numpy(np.array(heatmap, np.float32))[None], context,
                                insertion=mode == "keep", replacement=replacement, constant=constant, seed=seed,
                                steps=steps)
    return curves[0].cpu().numpy()


# -------------------------------------------------------------------------- pixels
def pixel_report(maps: Mapping[str, np.ndarray], y: int, x: int) -> dict[str, dict]:
    """For the pixel (row y, column x): per map, its ``value``, ``percentile`` (share of the map's pixels
    below it, ties half, in %) and ``rank`` (1 = the map's largest value)."""
    report = {}
    for name, heatmap in maps.items():
        values = np.asarray(heatmap, dtype=np.float64)
        if not (0 <= y < values.shape[0] and 0 <= x < values.shape[1]):
            raise ParameterError(f"Pixel ({y}, {x}) is outside the {values.shape[0]}×{values.shape[1]} map.")
        v = values[y, x]
        below, equal = np.count_nonzero(values < v), np.count_nonzero(values == v)
        report[name] = {"value": float(v), "percentile": 100.0 * (below + equal / 2) / values.size,
                        "rank": int(np.count_nonzero(values > v)) + 1}
    return report


def occluder_positions_at(probability_grid: np.ndarray, base_probability: float, ys: Sequence[int],
                          xs: Sequence[int], window: int, y: int, x: int, top: int = 3) -> list[dict]:
    """The occluder positions covering pixel (y, x) with the largest probability drop (base − p), largest
    first: ``top``, ``left`` (the occluder's corner), ``probability`` and ``drop``."""
    grid = np.asarray(probability_grid, dtype=np.float64)
    covering = [(i, j) for i, top_y in enumerate(ys) if top_y <= y < top_y + window
                for j, left in enumerate(xs) if left <= x < left + window]
    rows = [{"top": int(ys[i]), "left": int(xs[j]), "probability": float(grid[i, j]),
             "drop": float(base_probability - grid[i, j])} for i, j in covering]
    return sorted(rows, key=lambda r: -r["drop"])[:top]


def rise_masks_at(model: LoadedModel, x: torch.Tensor, target: int, y: int, px: int, *, engine: Engine,
                  shape: str, cell: int, p: float, seed: int, fill: str, constant: float = DEFAULT_CONSTANT,
                  n: int = 64, top: int = 3) -> dict[str, list[dict]]:
    """Of RISE's first ``n`` masks (``sample_masks``, the run's own): those keeping pixel (y, px)
    (mask ≥ 0.5 there) with the highest target probability, and those removing it with the lowest:
    ``{"keeping": [...], "removing": [...]}``, each ``{index, probability, mask}``."""
    from .methods.rise import sample_masks

    masks = sample_masks(shape=shape, cell=cell, p=p, seed=seed, n=n, size=tuple(x.shape[-2:]), device=model.device)
    xs = x.to(model.device, torch.float32)
    fills = replacement_image(model, xs, fill, value=constant, seed=seed)

    def probabilities(start: int, stop: int) -> torch.Tensor:
        with torch.no_grad():
            logits = model.module(replace(xs, masks[start:stop, None], fills)).float()
        return logits.softmax(dim=-1)[:, target]

    scores = engine.map_cat(probabilities, n, section="masked_forward", key=f"whatif-rise-{model.name}").cpu()
    masks = masks.cpu()
    kept = masks[:, y, px] >= 0.5
    rows = [{"index": i, "probability": float(scores[i]), "mask": masks[i].numpy()} for i in range(n)]
    keeping = sorted((r for r, k in zip(rows, kept.tolist()) if k), key=lambda r: -r["probability"])
    removing = sorted((r for r, k in zip(rows, kept.tolist()) if not k), key=lambda r: r["probability"])
    return {"keeping": keeping[:top], "removing": removing[:top]}


# ---------------------------------------------------------------------------- JSON
def edits_to_json(edits: Sequence[Edit]) -> str:
    """The edit list as compact JSON (the link's and the text box's form); defaults left out."""
    return json.dumps([e.to_json() for e in edits], separators=(",", ":"), ensure_ascii=False)


def _region_from_json(item: dict) -> Region:
    kinds = [k for k in ("box", "polygon", "cells", "top_k") if k in item]
    if len(kinds) != 1:
        raise ParameterError("Each edit needs exactly one of 'box', 'polygon', 'cells' or 'top_k'.")
    value = item[kinds[0]]
    if kinds[0] == "top_k":
        source = item.get("map")
        if not isinstance(source, str) or not source:
            raise ParameterError("A 'top_k' edit needs the name of its map ('map').")
        return TopK(source, K_PARAM.parse("top_k", value))
    if not isinstance(value, list) or len(value) > MAX_POINTS:
        raise ParameterError(f"'{kinds[0]}' must be a list of at most {MAX_POINTS} entries.")
    if kinds[0] == "box":
        if len(value) != 4:
            raise ParameterError("'box' must be [x0, y0, x1, y1].")
        return Box(*(_coordinate(v, "box") for v in value))
    if not all(isinstance(v, list) and len(v) == 2 for v in value):
        raise ParameterError(f"'{kinds[0]}' must be a list of pairs.")
    if kinds[0] == "polygon":
        return Polygon(tuple((_coordinate(a, "polygon"), _coordinate(b, "polygon")) for a, b in value))
    index = Param(int, 0, 0, MAX_SIDE)
    cells = frozenset((index.parse("cells", r), index.parse("cells", c)) for r, c in value)
    return Cells(cells, CELL_PARAM.parse("cell", item.get("cell", CELL_PARAM.default)))


def edits_from_json(text: str) -> list[Edit]:
    """The edit list in ``text`` (``edits_to_json``'s form); ``ParameterError`` saying what is wrong."""
    try:
        items = json.loads(text)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"The edit list is not valid JSON ({err}).") from None
    if not isinstance(items, list):
        raise ParameterError("The edit list must be a JSON list of edits.")
    edits = []
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ParameterError(f"Edit {i} must be a JSON object.")
        known = {"box", "polygon", "cells", "cell", "top_k", "map", *EDIT_PARAMS}
        stray = sorted(set(item) - known)
        if stray:
            raise ParameterError(f"Edit {i} has unknown field(s) {', '.join(stray)}.")
        try:
            region = _region_from_json(item)
            settings = {k: item[k] for k in EDIT_PARAMS if k in item}
            edits.append(Edit(region, **settings))
        except ParameterError as err:
            raise ParameterError(f"Edit {i}: {err}") from None
        except TypeError:
            raise ParameterError(f"Edit {i} has a value of the wrong kind.") from None
    return edits

