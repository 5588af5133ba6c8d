"""What the Evaluate page runs and remembers: the request its widgets describe, the evaluation run
batch by batch through the result store, its progress with the time left, the gallery's images,
and making one of them the sidebar's image.

Why batches: Streamlit stops a run (the Stop button, or any widget changed meanwhile) by raising
from the next element update, here the progress bar's, inside ``run_evaluation``, which then
returns nothing. Running one batch of ``batch_size`` images at a time and storing each
(``ui.cache.cached_evaluation_batch``) keeps the batches done: the page shows them, and Run
continues from the first missing one. The merged batches equal one ``run_evaluation`` with the
same batch size (``xai_core.evaluation.merge_results``), and a larger ``n`` of the embedded
dataset reuses the batches of a smaller one (its selection of n images starts with that of fewer).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import streamlit as st

from xai_core import render
from xai_core.engine import Progress
from xai_core.evaluation import EvaluationResult, EvaluationSource, merge_results, open_source
from xai_core.evaluation.sources import EmbeddedSource, FolderSource
from xai_core.imageio import load_image
from xai_core.metrics import Metric
from xai_core.model_handle import LoadedModel

from .cache import NamedParams, cached_evaluation_batch, cached_explain, stored_evaluation_batch
from .params import param_widget
from .sidebar import CHOSEN, DATASET, UPLOAD

_MERGED = "evaluate.merged"
_EXPLORED = "evaluate.explored"


def named_params(chosen: Mapping[str, Mapping[str, Any]]) -> NamedParams:
    """``{name: params}`` → the hashable ``((name, sorted params), ...)`` the cache keys hold, in order."""
    return tuple((name, tuple(sorted(params.items()))) for name, params in chosen.items())


@dataclass(frozen=True)
class EvaluationRequest:
    """One evaluation: ``n`` images of ``source`` (``embedded:SEED`` or a folder), scored with every
    metric for every method, ``batch_size`` images at a time."""
    source: str
    ground_truth: str
    n: int
    batch_size: int
    methods: NamedParams
    metrics: NamedParams

    @property
    def source_key(self) -> str:
        """What names the images and their ground truth in the cache keys."""
        return f"{self.source}|{self.ground_truth}"


@st.cache_resource(show_spinner="Reading the images' list…", max_entries=8)
def opened_source(_model: LoadedModel, model_key: str, source: str, ground_truth: str) -> EvaluationSource:
    """``open_source`` memoised per model (a folder is listed once; its files are read per batch).

    A folder's files changed on disk are seen after it leaves the cache, as for its results.
    """
    return open_source(source, _model, ground_truth)


def _source(model: LoadedModel, model_key: str, request: EvaluationRequest) -> EvaluationSource:
    return opened_source(model, model_key, request.source, request.ground_truth)


def batches(model: LoadedModel, model_key: str, request: EvaluationRequest) -> list[tuple[int, ...]]:
    """The positions of the images of each batch, in order: the source's selection of ``n``, cut
    into ``batch_size`` blocks, as ``run_evaluation`` cuts it. Raises ``XAIError`` (a missing
    folder, more images than it holds)."""
    selected = _source(model, model_key, request).select(request.n)
    return [tuple(selected[i:i + request.batch_size]) for i in range(0, len(selected), request.batch_size)]


def evaluate(model: LoadedModel, model_key: str, request: EvaluationRequest,
             progress: Callable[[float], None] | None = None) -> EvaluationResult:
    """Every batch of ``request``, from the result store or computed, merged; ``progress(images done)``.

    Raises the core's ``XAIError`` (a missing folder, a bad parameter) and whatever ``progress`` raises.
    """
    source = _source(model, model_key, request)
    parts, done = [], 0
    for positions in batches(model, model_key, request):
        step = None if progress is None else _batch_progress(progress, done, len(positions))
        parts.append(cached_evaluation_batch(model, model_key, source, request.source_key, positions,
                                             request.methods, request.metrics, _progress=step))
        done += len(positions)
        if progress is not None:
            progress(done)
    return _merged(model_key, request, parts)


def _batch_progress(progress: Callable[[float], None], done: int, size: int) -> Progress:
    """The runner's progress over one batch (a fraction of it) as images done of the whole request."""
    return lambda fraction, _message="": progress(done + fraction * size)


def stored(model: LoadedModel, model_key: str, request: EvaluationRequest) -> tuple[EvaluationResult | None, int]:
    """The merged batches of ``request`` already stored, from the first one up to the first missing
    one (what a stopped run finished), and how many images they hold; computes nothing, but opens
    the source (``XAIError`` for a missing folder)."""
    parts, done = [], 0
    for positions in batches(model, model_key, request):
        part = stored_evaluation_batch(model_key, request.source_key, positions, request.methods, request.metrics)
        if part is None:
            break
        parts.append(part)
        done += len(positions)
    return (_merged(model_key, request, parts) if parts else None), done


def _merged(model_key: str, request: EvaluationRequest, parts: list[EvaluationResult]) -> EvaluationResult:
    """``merge_results(parts)``, kept for the session while the same batches are shown (the summaries'
    bootstrap is not redone on every rerun): the first k batches of a request are always the same."""
    token = (model_key, request, len(parts))
    kept = st.session_state.get(_MERGED)
    if kept is None or kept[0] != token:
        kept = (token, merge_results(parts))
        st.session_state[_MERGED] = kept
    return kept[1]


# ------------------------------------------------------------------- progress
def time_left(elapsed: float, done: float, remaining: float) -> float | None:
    """Seconds left at the rate so far (``done`` images in ``elapsed`` s); ``None`` before any progress."""
    if done <= 0 or elapsed <= 0:
        return None
    return elapsed * remaining / done


def duration(seconds: float) -> str:
    """A rounded duration to read: "under 1 s", "4 s", "2 min 05 s", "1 h 03 min"."""
    seconds = round(seconds)
    if seconds < 1:
        return "under 1 s"
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class EvaluationProgress:
    """``progress(images done)`` drawn on a core progress callback as "k/n images · about T left".

    The rate is measured from the first report on, so batches taken from the result store before
    it do not make the estimate optimistic.
    """

    def __init__(self, bar: Progress, total: int, clock: Callable[[], float] = time.monotonic):
        self.bar, self.total, self.clock = bar, total, clock
        self._start: tuple[float, float] | None = None

    def __call__(self, images: float) -> None:
        now = self.clock()
        if self._start is None:
            self._start = (now, images)
        started, first = self._start
        left = time_left(now - started, images - first, self.total - images)
        text = f"{math.floor(images)}/{self.total} images"
        self.bar(images / self.total, text if left is None else f"{text} · about {duration(left)} left")


# ------------------------------------------------------------------- widgets
def metric_param_widgets(metric: Metric, model: LoadedModel, *, key_prefix: str, container: Any = st) -> dict:
    """A widget for every parameter of ``metric`` (``ui.params.param_widget``); ``{name: value}``.

    Keys are ``KEY_PREFIX.METRIC.NAME``, as ``param_widgets`` gives a method's.
    """
    return {name: param_widget(name, param, model, key=f"{key_prefix}.{metric.name}.{name}", container=container)
            for name, param in metric.params.items()}


# ------------------------------------------------------------------- gallery
def extremes(rows: Sequence[Mapping[str, Any]], method: str, metric: str, k: int,
             higher_is_better: bool) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The worst and the best rows of ``method`` × ``metric`` (finite scores), each list from the most
    extreme: ``k`` of each, or half the images when there are fewer than 2k, so no image is in both
    (among equal scores the best are the lower image indices)."""
    scored = [r for r in rows if r["method"] == method and r["metric"] == metric and math.isfinite(r["score"])]
    best_first = sorted(scored, key=lambda r: (-r["score"] if higher_is_better else r["score"], r["index"]))
    shown = min(k, max(1, len(scored) // 2))
    return best_first[::-1][:shown], best_first[:shown]


def thumbnails(model: LoadedModel, model_key: str, request: EvaluationRequest, method: str,
               rows: Sequence[Mapping[str, Any]], colormap: str = "viridis", opacity: float = 0.5) -> list[np.ndarray]:
    """Each row's image as the network sees it with ``method``'s map for its label over it (H×W×3 uint8).

    The maps are explained again one image at a time (``cached_explain``), with the request's
    parameters of ``method``: the batched maps the scores came from equal them to float rounding.
    """
    if not rows:
        return []
    batch = _source(model, model_key, request).load([r["index"] for r in rows])
    params = dict(request.methods)[method]
    pictures = []
    for x, image_id, label in zip(batch.images, batch.ids, batch.labels.tolist()):
        [(heatmap, _attribution)] = cached_explain(model, model_key, f"{request.source_key}:{image_id}", x.numpy(),
                                                   method, (int(label),), params)
        pictures.append(render.overlay(model.to_display(x), heatmap, colormap, alpha=opacity))
    return pictures


def explore(source: EvaluationSource, row: Mapping[str, Any], label_name: str) -> None:
    """Make ``row``'s image the sidebar's, with its true class as the target (a button's ``on_click``:
    it runs before the next script run, so the sidebar's widgets may still be set).

    An embedded image becomes the sidebar's dataset (seed, index); a folder's image becomes the
    sidebar's upload, as if the file had been uploaded.
    """
    if isinstance(source, EmbeddedSource):
        st.session_state.update({"w.source": DATASET, "w.seed": source.seed, "w.index": int(row["index"])})
    elif isinstance(source, FolderSource):
        path = source.files[int(row["index"])].path
        # The sidebar keeps its upload as ``xai.upload`` (ui/sidebar.py ``_upload_image``).
        st.session_state["xai.upload"] = {"file_id": f"evaluate:{path}", "filename": row["image"],
                                          "image": load_image(path)}
        st.session_state["w.source"] = UPLOAD
    st.session_state.update({"w.target_mode": CHOSEN, "w.target": int(row["label"])})
    st.session_state[_EXPLORED] = f"{row['image']} (target: {label_name})"


def explored() -> str | None:
    """What the last ``explore`` made the sidebar's image, once (``None`` afterwards)."""
    return st.session_state.pop(_EXPLORED, None)
