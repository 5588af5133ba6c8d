"""Evaluate explanation methods with metrics over many images: one row per image × method × metric.

For each batch of images of a source (``sources.py``), every method explains every image for its
true label (``xai_core.methods.explain_batch``), and every metric scores those maps against the
batch's ground truth (``xai_core.metrics.compute``). The runner only computes: it writes nothing
(``write_csv`` and ``result_json`` are for the command line and the page).

**Same result whatever the sharding.** The selected images are cut into consecutive blocks of
``batch_size``; shard ``(rank, world)`` takes blocks ``rank, rank + world, ...``. Every image is
therefore explained in the same batch whatever the number of shards, and the merged rows
(``merge_results``, sorted by image, method, metric) equal one process's bit for bit on the same
device. A different ``batch_size`` changes which images share a batch, and batched kernels may
round differently in the last bits (≈ 1e-7 relative for float32 gradients): equal to float
rounding, not bit for bit. Summaries and mean curves are computed from the merged rows, in image
order, so they follow the rows.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..engine import Engine, Progress, oom_guard
from ..errors import ParameterError
from ..model_handle import LoadedModel
from .sources import Batch, EvaluationSource, open_source
from .statistics import summarise

ROW_COLUMNS = ("index", "image", "label", "method", "metric", "score")
"""The columns of a per-image row, in the order ``write_csv`` writes them."""
GROUND_TRUTH_NEEDS = frozenset({"box", "mask"})

Key = tuple[str, str]  # (method, metric)


@dataclass
class MeanCurve:
    """A metric's curve (deletion, insertion, sanity-check similarity) averaged over images."""
    x: list                 # fraction removed, or the randomised layers' names
    mean: np.ndarray        # K, mean over the images whose curve is finite everywhere
    n: int


@dataclass
class EvaluationResult:
    """Per-image rows and what is derived from them.

    ``rows``: one dict per image × method × metric (``ROW_COLUMNS``), sorted by image index, then
    method and metric in the order they were given. ``summary``: one dict per method × metric:
    method, metric, mean, ci_low, ci_high (95 % bootstrap, seeded), n (finite scores),
    higher_is_better. ``curves``: the mean curve of each method × metric that has one;
    ``image_curves`` the per-image curves they average (by image index), kept to merge shards.
    """
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    curves: dict[Key, MeanCurve]
    image_curves: dict[Key, dict[int, np.ndarray]] = field(repr=False)
    methods: list[str]
    metrics: list[str]


def run_evaluation(model: LoadedModel, source: str | EvaluationSource, methods: Mapping[str, Mapping[str, Any]],
                   metrics: Mapping[str, Mapping[str, Any]], *, n: int, batch_size: int = 32,
                   engine: Engine | None = None, progress: Progress | None = None,
                   shard: tuple[int, int] = (0, 1), ground_truth: str = "object") -> EvaluationResult:
    """Score every method (name → its parameters) with every metric (name → its parameters) on ``n``
    images of ``source`` (``embedded:SEED``, a folder, or an ``EvaluationSource``; ``ground_truth``:
    its object or its part), ``batch_size`` images at a time, each explained for its true label.

    ``shard=(rank, world)`` evaluates only this shard's blocks of images (see the module docstring);
    ``merge_results`` joins the shards. ``progress(fraction, message)`` reports the images done.
    """
    from ..methods import get_method
    from ..metrics import get_metric

    if n < 1 or batch_size < 1:
        raise ParameterError("The number of images and the batch size must be at least 1.")
    rank, world = shard
    if not 0 <= rank < world:
        raise ParameterError(f"Shard {rank} of {world} does not exist.")
    if not methods or not metrics:
        raise ParameterError("Choose at least one method and one metric.")
    for name, params in methods.items():
        get_method(name).parse_params(dict(params))  # fail on a bad name or parameter before any image
    needs = {}
    for name, params in metrics.items():  # likewise for every metric
        spec = get_metric(name)
        needs[name] = spec.required(spec.parse_params(dict(params)))
    if isinstance(source, str):
        source = open_source(source, model, ground_truth)
    blind = [name for name, need in needs.items() if need & GROUND_TRUTH_NEEDS and not source.has_ground_truth]
    if blind:
        raise ParameterError(f"The {source.description} has no ground truth (masks or boxes.csv), "
                             f"needed by {', '.join(blind)}.")
    selected = source.select(n)
    blocks = [selected[i:i + batch_size] for i in range(0, len(selected), batch_size)][rank::world]
    engine = engine or Engine(model.device)
    total, done = sum(len(b) for b in blocks), 0
    rows: list[dict[str, Any]] = []
    image_curves: dict[Key, dict[int, np.ndarray]] = {}
    curve_x: dict[Key, list] = {}
    for block in blocks:
        batch = source.load(block)
        report = None if progress is None else _stage_progress(progress, done, len(block), total,
                                                              len(methods) * (1 + len(metrics)))
        with oom_guard(model.device, f"a batch of {len(block)} images"):
            _evaluate_batch(model, batch, methods, metrics, engine, report, rows, image_curves, curve_x)
        done += len(block)
        if progress is not None:
            progress(done / total, f"{done}/{total} images")
    return _result(rows, image_curves, curve_x, list(methods), list(metrics))


StageProgress = Callable[[int, str], Progress]
"""``report(stage, label)``: the ``Progress`` of one stage of a batch (a method's maps, or one metric)."""


def _stage_progress(progress: Progress, done: int, size: int, total: int, stages: int) -> StageProgress:
    """Stage ``s`` of ``stages`` of a batch of ``size`` images, after ``done`` of ``total``, as a fraction."""
    def report(stage: int, label: str) -> Progress:
        def step(fraction: float, message: str) -> None:
            images = done + size * (stage + fraction) / stages
            progress(images / total, f"{done}/{total} images · {label}")
        return step
    return report


def _evaluate_batch(model: LoadedModel, batch: Batch, methods: Mapping[str, Mapping[str, Any]],
                    metrics: Mapping[str, Mapping[str, Any]], engine: Engine, report: StageProgress | None,
                    rows: list[dict[str, Any]], image_curves: dict[Key, dict[int, np.ndarray]],
                    curve_x: dict[Key, list]) -> None:
    """Explain ``batch`` with every method and score it with every metric, appending to the outputs."""
    from ..methods import explain_batch
    from ..metrics import MetricContext, compute

    xs = batch.images.to(model.device)
    targets = batch.labels.to(model.device)
    truth = batch.ground_truth(model.device)
    stage = 0
    for method, method_params in methods.items():
        step = None if report is None else report(stage, method)
        explained = explain_batch(model, xs, method, [[int(t)] for t in batch.labels], dict(method_params),
                                  engine=engine, progress=step)
        maps = torch.from_numpy(np.stack([e[0].map for e in explained])).to(model.device, torch.float32)
        stage += 1
        for metric, metric_params in metrics.items():
            step = None if report is None else report(stage, f"{method} · {metric}")
            context = MetricContext(model=model, xs=xs, targets=targets, engine=engine, method=method,
                                    method_params=dict(method_params), progress=step)
            out = compute(metric, maps, truth, context, dict(metric_params))
            scores = out.scores.detach().double().cpu().numpy()
            rows.extend({"index": index, "image": image, "label": int(label), "method": method, "metric": metric,
                         "score": float(score)}
                        for index, image, label, score in zip(batch.indices, batch.ids, batch.labels, scores))
            if out.curves is not None:
                curves = out.curves.detach().double().cpu().numpy()
                image_curves.setdefault((method, metric), {}).update(zip(batch.indices, curves))
                curve_x[(method, metric)] = list(range(curves.shape[1]) if out.curve_x is None else out.curve_x)
            stage += 1


def _result(rows: list[dict[str, Any]], image_curves: dict[Key, dict[int, np.ndarray]],
            curve_x: dict[Key, list], methods: list[str], metrics: list[str]) -> EvaluationResult:
    """Sorted rows, their summary and mean curves."""
    from ..metrics import METRICS

    order = ({m: i for i, m in enumerate(methods)}, {m: i for i, m in enumerate(metrics)})
    rows = sorted(rows, key=lambda r: (r["index"], order[0][r["method"]], order[1][r["metric"]]))
    scores: dict[Key, list[float]] = {}
    for row in rows:
        scores.setdefault((row["method"], row["metric"]), []).append(row["score"])
    summary = [{"method": method, "metric": metric, **summarise(scores.get((method, metric), [])),
                "higher_is_better": bool(METRICS[metric].higher_is_better)}
               for method in methods for metric in metrics]
    curves = {}
    for key, by_image in image_curves.items():
        stacked = np.stack([by_image[i] for i in sorted(by_image)])
        finite = stacked[np.isfinite(stacked).all(axis=1)]
        mean = finite.mean(axis=0) if len(finite) else np.full(stacked.shape[1], math.nan)
        curves[key] = MeanCurve(x=curve_x[key], mean=mean, n=len(finite))
    return EvaluationResult(rows, summary, curves, image_curves, methods, metrics)


def merge_results(parts: Sequence[EvaluationResult]) -> EvaluationResult:
    """One result from the results of every shard (of the same methods and metrics)."""
    rows = [row for part in parts for row in part.rows]
    image_curves: dict[Key, dict[int, np.ndarray]] = {}
    curve_x: dict[Key, list] = {}
    for part in parts:
        for key, by_image in part.image_curves.items():
            image_curves.setdefault(key, {}).update(by_image)
            curve_x[key] = part.curves[key].x
    return _result(rows, image_curves, curve_x, parts[0].methods, parts[0].metrics)


# ------------------------------------------------------------------ output
def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """The per-image rows as CSV (``ROW_COLUMNS``; scores written exactly, NaN as ``nan``)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(ROW_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def result_json(result: EvaluationResult) -> dict[str, Any]:
    """The result as plain JSON values (NaN as null): ``{summary, rows, curves}``."""
    curves = [{"method": method, "metric": metric, "x": curve.x, "mean": curve.mean.tolist(), "n": curve.n}
              for (method, metric), curve in result.curves.items()]
    return _finite({"summary": result.summary, "rows": result.rows, "curves": curves})


def write_json(result: EvaluationResult, path: str | os.PathLike) -> None:
    """``result_json`` written to ``path``."""
    with open(path, "w") as f:
        json.dump(result_json(result), f)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
