"""What the Compare page loads and remembers: the models it compares (the sidebar's own, with its
checkpoint, or any registered one), the image preprocessed for each, the maps through the shared
cache, the method widgets every model can share, and the class-visualisation runs.

A model that cannot be loaded (weights not cached, unknown name) is reported once and not retried
on every rerun while it stays selected: probing torchvision's download costs seconds offline.
Finished inversions are kept for every session under what defines them (models, class, settings,
start), so running the same comparison again shows them at once.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, MutableMapping, Sequence

import numpy as np
import streamlit as st
import torch
from PIL import Image

from xai_core.compare import ClassMatch, MapSource
from xai_core.engine import Engine
from xai_core.errors import XAIError
from xai_core.inversion import InversionResult, InversionRun, InversionSettings
from xai_core.methods import METHODS, Method
from xai_core.model_handle import LoadedModel
from xai_core.models import list_models

from .cache import cached_explain, get_model, model_key, progress_bar
from .inversion_session import InversionSession
from .params import widget_kind
from .sidebar import Selection

_FAILED = "compare.failed"
_INVERSION = "compare.inversion_runs"
_FINISHED_RUNS = 16


@dataclass
class ComparedModel:
    """One row of the comparison: how the page names it, the model, its cache key and its input."""
    label: str
    model: LoadedModel
    key: str
    x: np.ndarray                  # the sidebar's image preprocessed for this model, C×H×W

    @property
    def input(self) -> torch.Tensor:
        """``x`` as the tensor the library takes (sharing its memory)."""
        return torch.from_numpy(self.x)

    @property
    def display_image(self) -> np.ndarray:
        """The input as this model sees it, H×W×3 uint8."""
        return self.model.to_display(self.input)


def model_options(selection: Selection) -> dict[str, bool]:
    """Every model the page offers, label → whether its weights load offline: the sidebar's own first when
    it is not a registry model as such (a checkpoint, class names), then the registry's."""
    options = {} if sidebar_option(selection) == selection.model.name else {sidebar_option(selection): True}
    return options | {row["name"]: row["weights_available"] for row in list_models()}


def sidebar_option(selection: Selection) -> str:
    """The option naming the sidebar's model: its registry name, or with its weights when they are the
    user's (``embedded (checkpoint mine.pt)``)."""
    plain = selection.model_key == model_key(selection.model.name, None, None, selection.device)
    return selection.model.name if plain else f"{selection.model.name} ({selection.model.weights_source})"


@st.cache_data(show_spinner=False, max_entries=64)
def _preprocessed(_model: LoadedModel, key: str, _image: Image.Image, image_hash: str) -> np.ndarray:
    return _model.preprocess(_image).numpy()


def load_compared(labels: Sequence[str], selection: Selection,
                  state: MutableMapping[str, Any]) -> tuple[list[ComparedModel], list[str]]:
    """The chosen models with the sidebar's image preprocessed for each, and one sentence per model
    that could not be loaded (``label: reason``)."""
    failed: dict[str, str] = state.setdefault(_FAILED, {})
    for gone in set(failed) - set(labels):  # deselected: try again when chosen again
        del failed[gone]
    loaded, errors = [], []
    for label in labels:
        if label == sidebar_option(selection):
            model, key = selection.model, selection.model_key
        elif label in failed:
            errors.append(f"{label}: {failed[label]}")
            continue
        else:
            try:
                model = get_model(label, None, None, selection.device)
            except XAIError as err:
                failed[label] = str(err)
                errors.append(f"{label}: {err}")
                continue
            key = model_key(label, None, None, selection.device)
        x = selection.x.numpy() if key == selection.model_key else _preprocessed(model, key, selection.image,
                                                                                  selection.image_hash)
        loaded.append(ComparedModel(label, model, key, x))
    return loaded, errors


def class_options(matches: Sequence[ClassMatch]) -> dict[str, ClassMatch]:
    """The class picker's options: each shared class by name (with the first model's index where two
    classes have the same name, as ImageNet's two "crane")."""
    counts = Counter(m.name.casefold() for m in matches)
    return {(m.name if counts[m.name.casefold()] == 1 else f"{m.name} ({m.indices[0]})"): m for m in matches}


def cached_maps(compared: Sequence[ComparedModel], image_hash: str) -> MapSource:
    """A ``compare_models`` map source over ``ui.cache.cached_explain``, with a progress bar while it computes."""
    def source(position: int, method: str, target: int, params: Mapping[str, Any]) -> np.ndarray:
        row = compared[position]
        bar = progress_bar(f"{METHODS[method].label} on {row.label}")
        try:
            ((heatmap, _),) = cached_explain(row.model, row.key, image_hash, row.x, method, (target,),
                                             tuple(sorted(params.items())), _progress=bar)
        finally:
            bar.done()
        return heatmap
    return source


def has_shared_params(method: Method) -> bool:
    """Whether ``param_widgets(..., layers=False)`` draws anything for ``method`` (a CAM's only parameter is its layer)."""
    return method.bases is not None or any(widget_kind(n, p) != "layer" for n, p in method.params.items())


# -------------------------------------------------------------------- inversion
@st.cache_resource(max_entries=_FINISHED_RUNS)
def _finished(key: str) -> dict:
    """A holder shared by every session for the finished results of the runs ``key`` names."""
    return {}


class CompareInversion(InversionSession):
    """Page 6's class visualisations: one run per compared model, each for its own index of the class.

    Start, Stop, Resume and ``advance`` are page 4's (``InversionSession``), in a state of their own.
    """

    def __init__(self, state: MutableMapping[str, Any]):
        super().__init__(state.setdefault(_INVERSION, {}))

    @staticmethod
    def key(compared: Sequence[ComparedModel], match: ClassMatch, settings: InversionSettings,
            start_hash: str | None) -> str:
        """What defines the runs: models, their class indices, the settings and the start image (None: noise)."""
        return repr(([row.key for row in compared], match.indices, settings, start_hash))

    def start_compared(self, compared: Sequence[ComparedModel], match: ClassMatch, settings: InversionSettings,
                       *, start_image: Image.Image | None, key: str, engine: Engine) -> None:
        """New runs for ``match`` on every model (from noise, or from ``start_image``: deep dream),
        unless the same runs have finished before: then their results are shown."""
        runs = [] if _finished(key) else [
            (row.label, InversionRun(row.model, [target], settings, engine=engine,
                                     start=None if start_image is None else row.model.preprocess(start_image)))
            for row, target in zip(compared, match.indices)]
        self._state.update(runs=runs, active=bool(runs), key=key)

    def keep_only(self, key: str) -> None:
        """Forget runs of another comparison (other models, class or settings): they no longer apply."""
        if self._state.get("key") not in (None, key):
            self._state.update(runs=[], active=False, key=None)

    def results(self) -> list[tuple[str, InversionResult]]:
        """(label, result) of every model: stored once finished, else what the runs reached so far."""
        key = self._state.get("key")
        if key is None:
            return []
        stored = _finished(key)
        if not stored and self.runs and not self.unfinished:
            stored["results"] = [(label, run.result()) for label, run in self.runs]
            self._state["runs"] = []  # the results are kept; the runs' tensors are not needed any more
        return stored.get("results") or [(label, run.result()) for label, run in self.runs]
