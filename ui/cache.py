"""Caching at the UI edge: models, predictions and explanations, shared by every session.

- ``get_model``: one ``LoadedModel`` per (name, checkpoint hash, class names, device),
  through ``st.cache_resource`` (the checkpoint's bytes are not hashed on every rerun: the
  cached function receives them as ``_checkpoint`` next to their hash).
- ``cached_predict``: ``st.cache_data``; returns plain dicts.
- ``cached_explain``: memoised explanations (host numpy, read-only arrays).

Why ``cached_explain`` does not use ``st.cache_data``: a progress bar drawn from inside an
``st.cache_data`` function is recorded for replay, and on a cache hit the replay fails
(``CacheReplayClosureError``), because the bar was created outside the function. So the
explanation store is a bounded ``ui.shared_store.SharedStore`` held by ``st.cache_resource`` and the computation runs
outside any streamlit cache: on a miss the ``_progress`` callback draws (see
``progress_bar``); on a hit nothing is computed and nothing is drawn.
"""
from __future__ import annotations

import hashlib
import io
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import streamlit as st
import torch

from xai_core.engine import Engine, Progress
from xai_core.methods import explain
from xai_core.model_handle import LoadedModel
from xai_core.models import load_model

from .shared_store import SharedStore

if TYPE_CHECKING:
    from xai_core.evaluation import Batch, EvaluationResult, EvaluationSource
    from xai_core.methods.occlusion import OcclusionMaps
    from xai_core.zeiler_fergus import DeconvProjections, TransformSensitivity

_RESULT_BUDGET_BYTES = 512 * 2**20
_RESULT_MAX_ENTRIES = 4096  # the bytes bound the store; this only caps the bookkeeping of tiny results
_EVALUATION_ROW_BYTES = 512  # a per-image row dict, as the result store counts it


def bytes_hash(data: bytes) -> str:
    """A short content hash (16 hex digits of SHA-256): cache keys of uploads, images and inputs."""
    return hashlib.sha256(data).hexdigest()[:16]


def model_key(name: str, checkpoint_hash: str | None, class_names: Sequence[str] | None, device: str) -> str:
    """The hashable id of a loaded model: every input that changes its outputs."""
    names = bytes_hash("\n".join(class_names).encode()) if class_names else "-"
    return f"{name}|{checkpoint_hash or 'pretrained'}|{names}|{device}"


@st.cache_resource(show_spinner="Loading model…", max_entries=6)  # four compared models, the sidebar's, one spare
def _load(name: str, checkpoint_hash: str | None, checkpoint_name: str, class_names: tuple[str, ...] | None,
          device: str, _checkpoint: bytes | None) -> LoadedModel:
    source = None
    if _checkpoint is not None:
        source = io.BytesIO(_checkpoint)
        source.name = checkpoint_name  # the model card and error messages name the file
    return load_model(name, checkpoint=source, class_names=list(class_names) if class_names else None,
                      device=device)


def get_model(name: str, checkpoint_bytes: bytes | None, class_names: Sequence[str] | None, device: str,
              checkpoint_hash: str | None = None, checkpoint_name: str = "uploaded checkpoint") -> LoadedModel:
    """The cached model; raises the core's ``XAIError`` subclasses (not cached) on failure.

    Give ``checkpoint_hash`` when it is already known, to skip hashing the bytes again.
    """
    if checkpoint_bytes is None:
        checkpoint_hash = None
    elif checkpoint_hash is None:
        checkpoint_hash = bytes_hash(checkpoint_bytes)
    return _load(name, checkpoint_hash, checkpoint_name, tuple(class_names) if class_names else None, device,
                 checkpoint_bytes)


@st.cache_resource
def get_engine(device: str) -> Engine:
    """One batching engine per device, so batch sizes learned on one page serve every page."""
    return Engine(device)


@st.cache_data(show_spinner=False, max_entries=256)
def cached_predict(_model: LoadedModel, model_key: str, image_hash: str, x_numpy: np.ndarray,
                   topk: int = 5) -> list[dict]:
    """Top-k ``[{index, name, probability, logit}]`` for the preprocessed input ``x_numpy``."""
    return _model.predict(torch.from_numpy(x_numpy), topk)


@st.cache_resource
def _result_store() -> SharedStore:
    return SharedStore(max_entries=_RESULT_MAX_ENTRIES, max_bytes=_RESULT_BUDGET_BYTES)


def _frozen(array: np.ndarray | None) -> np.ndarray | None:
    if array is not None:
        array.setflags(write=False)  # shared between sessions: nobody may edit a cached map
    return array


def cached_explain(_model: LoadedModel, model_key: str, image_hash: str, x_numpy: np.ndarray, method: str,
                   targets: tuple[int, ...], params: tuple[tuple[str, Any], ...] = (), *,
                   _progress: Progress | None = None, with_extras: bool = False) -> list[tuple]:
    """``xai_core.methods.explain`` memoised; one ``(map H×W, attribution C×H×W | None)`` per target.

    ``params`` is ``tuple(sorted(d.items()))``. The key also holds a digest of ``x_numpy``,
    so a modified input (occluded, rotated...) under the same ``image_hash`` is not confused
    with the original. ``with_extras=True`` appends the method's extras dict to each tuple.
    ``_progress`` is called only when the result is computed. Errors (``XAIError``) propagate
    and are not cached.
    """
    x_numpy = np.ascontiguousarray(x_numpy, dtype=np.float32)
    key = (model_key, image_hash, bytes_hash(x_numpy.tobytes()), method, tuple(targets), tuple(params))
    store = _result_store()
    results = store.get(key)
    if results is None:
        explanations = explain(_model, torch.from_numpy(x_numpy.copy()), method, list(targets), dict(params),
                               engine=get_engine(str(_model.device)), progress=_progress)
        results = [(_frozen(e.map), _frozen(e.attribution), e.extras) for e in explanations]
        size = sum(m.nbytes + (0 if a is None else a.nbytes) for m, a, _ in results)
        store.put(key, results, size)
    return [r if with_extras else r[:2] for r in results]


class ProgressBar:
    """A ``st.progress`` bar as a core progress callback ``(fraction, message) -> None``.

    Pass it as ``progress=`` (uncached core calls) or ``_progress=`` (``cached_explain``);
    call ``done()`` afterwards to remove the bar.
    """

    def __init__(self, label: str):
        self.label = label
        self._bar = st.progress(0.0, text=label)

    def __call__(self, fraction: float, message: str = "") -> None:
        text = f"{self.label} — {message}" if message else self.label
        self._bar.progress(min(max(float(fraction), 0.0), 1.0), text=text)

    def done(self) -> None:
        """Remove the bar."""
        self._bar.empty()


def progress_bar(label: str) -> ProgressBar:
    """A new ``ProgressBar`` drawn where it is called."""
    return ProgressBar(label)


def run_with_progress(label: str, fn: Callable[[Progress], Any]) -> Any:
    """``fn(progress)`` with a bar that disappears when it returns (or raises)."""
    bar = progress_bar(label)
    try:
        return fn(bar)
    finally:
        bar.done()


# ----------------------------------------------------- Zeiler & Fergus (pages/4_Inversion_and_Zeiler_Fergus.py)
@st.cache_data(show_spinner="Occluding every position…", max_entries=32)
def cached_occlusion(_model: LoadedModel, model_key: str, image_hash: str, x_numpy: np.ndarray, target: int,
                     window: int, stride: int, fill: str, layer: str | None) -> OcclusionMaps:
    """``xai_core.methods.occlusion.occlusion_sensitivity`` (host arrays) memoised."""
    from xai_core.methods.occlusion import occlusion_sensitivity

    return occlusion_sensitivity(_model, torch.from_numpy(x_numpy), target, window=window, stride=stride,
                                 fill=fill, layer=layer, engine=get_engine(str(_model.device)))


@st.cache_data(show_spinner="Projecting feature maps…", max_entries=32)
def cached_deconv_projections(_model: LoadedModel, model_key: str, image_hash: str, x_numpy: np.ndarray,
                              layer: str, top: int, mode: str) -> DeconvProjections:
    """``xai_core.zeiler_fergus.deconv_projections`` memoised."""
    from xai_core.zeiler_fergus import deconv_projections

    return deconv_projections(_model, torch.from_numpy(x_numpy), layer, top=top, mode=mode)


@st.cache_data(show_spinner="Transforming the image…", max_entries=32)
def cached_transform_sensitivity(_model: LoadedModel, model_key: str, image_hash: str, x_numpy: np.ndarray,
                                 kind: str, values: tuple[float, ...], top: int) -> TransformSensitivity:
    """``xai_core.zeiler_fergus.transform_sensitivity`` memoised."""
    from xai_core.zeiler_fergus import transform_sensitivity

    return transform_sensitivity(_model, torch.from_numpy(x_numpy), kind, list(values), top=top,
                                 engine=get_engine(str(_model.device)))


# ------------------------------------------------------------- evaluation batches (pages/5_Evaluate.py)
NamedParams = tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
"""Methods or metrics with their parameters, hashable: ``((name, tuple(sorted(params.items()))), ...)``."""


class _Positions:
    """The images at ``positions`` of ``source``, as a source whose every selection is those images."""

    def __init__(self, source: EvaluationSource, positions: tuple[int, ...]):
        self.source, self.positions = source, positions
        self.description, self.has_ground_truth = source.description, source.has_ground_truth

    def select(self, n: int) -> list[int]:
        """The positions, whatever ``n`` (the runner asks for as many as there are)."""
        return list(self.positions)

    def load(self, indices: Sequence[int]) -> Batch:
        """The underlying source's images at ``indices``."""
        return self.source.load(indices)


def _evaluation_key(model_key: str, source_key: str, positions: tuple[int, ...], methods: NamedParams,
                    metrics: NamedParams) -> tuple:
    return ("evaluation", model_key, source_key, positions, methods, metrics)


def cached_evaluation_batch(_model: LoadedModel, model_key: str, _source: EvaluationSource, source_key: str,
                            positions: tuple[int, ...], methods: NamedParams, metrics: NamedParams, *,
                            _progress: Progress | None = None) -> EvaluationResult:
    """``run_evaluation`` of the images at ``positions`` of ``_source`` as one batch, memoised.

    ``source_key`` names ``_source``: its string and ground truth. A batch's rows depend only on
    its images, so any evaluation whose selection holds the same batch reuses it, and
    ``merge_results`` of consecutive batches of ``batch_size`` equals one ``run_evaluation`` with that
    ``batch_size``. Errors (``XAIError``, or a progress callback raising to stop) are not cached.
    """
    from xai_core.evaluation import run_evaluation

    key = _evaluation_key(model_key, source_key, positions, methods, metrics)
    store = _result_store()
    result = store.get(key)
    if result is None:
        result = run_evaluation(_model, _Positions(_source, positions), {m: dict(p) for m, p in methods},
                                {m: dict(p) for m, p in metrics}, n=len(positions), batch_size=len(positions),
                                engine=get_engine(str(_model.device)), progress=_progress)
        size = len(result.rows) * _EVALUATION_ROW_BYTES + sum(
            curve.nbytes for by_image in result.image_curves.values() for curve in by_image.values())
        store.put(key, result, size)
    return result


def stored_evaluation_batch(model_key: str, source_key: str, positions: tuple[int, ...], methods: NamedParams,
                            metrics: NamedParams) -> EvaluationResult | None:
    """The batch ``cached_evaluation_batch`` stored with these arguments, or ``None``: computes nothing."""
    return _result_store().get(_evaluation_key(model_key, source_key, positions, methods, metrics))
