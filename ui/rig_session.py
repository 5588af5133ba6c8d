"""What the IG and RIG page remembers within one browser session, so that a rerun (any widget
change) recomputes nothing it already has.

Generating or reading the training images takes seconds, training minutes and explaining
every network tens of seconds, so each is kept under a key of everything that determines it:
the training images per (model, pair, source); the support networks and their accuracy table
per ``TrainingRequest``; the explanations per (request, image, count, τ, steps); and the
occlusion table of each architecture explained, so that the last two can be shown side by side.
Training itself stays on disk across sessions (``xai_core.rig.store``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, MutableMapping, Sequence

import pandas as pd
import torch

from xai_core import dataset, rig
from xai_core.engine import Engine, Progress
from xai_core.model_handle import LoadedModel

STATE_KEY = "rig"
_KINDS = ("data", "supports", "accuracy", "explanations", "occlusion")


@dataclass(frozen=True)
class TrainingRequest:
    """Everything that determines one set of support networks, as the page asks for it."""
    model_key: str
    data_identity: str        # ``TrainingData.identity`` of the training split
    alphas: tuple[float, ...]
    lr: float
    epochs: int


def default_pair(model: LoadedModel, predictions: Sequence[dict]) -> tuple[int, int]:
    """The pair offered first: the embedded dataset's part pair, else the image's two top classes."""
    if rig.uses_embedded_dataset(model):
        return dataset.PART_PAIR
    return predictions[0]["index"], predictions[1]["index"]


def explained_inputs(x: torch.Tensor, val: rig.TrainingData, count: int) -> list[tuple[str, torch.Tensor]]:
    """The selected image, then held-out validation images, ``count`` in all (as many as there are)."""
    held_out = [(f"held-out {i + 1}", val.images[i]) for i in range(min(count - 1, len(val.labels)))]
    return [("selected", x), *held_out]


class RigSession:
    """Page 3's memory in ``st.session_state`` (any mutable mapping, for tests)."""

    def __init__(self, state: MutableMapping[str, Any]):
        self._memo: dict[str, dict] = state.setdefault(STATE_KEY, {kind: {} for kind in _KINDS})

    def _remember(self, kind: str, key: Hashable, compute: Callable[[], Any]) -> Any:
        store = self._memo[kind]
        if key not in store:
            store[key] = compute()
        return store[key]

    def training_sets(self, model: LoadedModel, model_key: str, classes: tuple[int, int], *, folder: str | None,
                      seed: int, n: int) -> tuple[rig.TrainingData, rig.TrainingData]:
        """``rig.training_sets``, once per model, pair and source."""
        source = (folder,) if folder else (seed, n)
        return self._remember("data", (model_key, classes, *source),
                              lambda: rig.training_sets(model, classes, folder=folder, seed=seed, n=n))

    def supports(self, request: TrainingRequest) -> rig.SupportNetworks | None:
        """The networks trained (or loaded) for ``request`` in this session, if any."""
        return self._memo["supports"].get(request)

    def train(self, model: LoadedModel, train: rig.TrainingData, request: TrainingRequest,
              progress: Progress | None = None) -> rig.SupportNetworks:
        """``rig.train_support_networks`` for ``request`` (from disk when trained before)."""
        return self._remember("supports", request, lambda: rig.train_support_networks(
            model, train, request.alphas, lr=request.lr, epochs=request.epochs, progress=progress))

    def accuracy(self, model: LoadedModel, request: TrainingRequest, supports: rig.SupportNetworks,
                 train: rig.TrainingData, val: rig.TrainingData) -> list[dict]:
        """``rig.accuracy_table``, once per request."""
        return self._remember("accuracy", request, lambda: rig.accuracy_table(model, supports, train, val))

    def explanations(self, key: Hashable) -> list[rig.RigExplanation] | None:
        """The explanations computed under ``key`` in this session, if any."""
        return self._memo["explanations"].get(key)

    def explain(self, key: Hashable, model: LoadedModel, supports: rig.SupportNetworks,
                inputs: Sequence[tuple[str, torch.Tensor]], *, tau: float, steps: int, engine: Engine,
                progress: Progress) -> list[rig.RigExplanation]:
        """``rig.rig_explain`` on every input, one progress bar over all of them."""
        def run_all() -> list[rig.RigExplanation]:
            return [rig.rig_explain(model, x, supports, tau=tau, steps=steps, engine=engine,
                                    progress=lambda f, m, i=i: progress((i + f) / len(inputs), m))
                    for i, (_, x) in enumerate(inputs)]

        return self._remember("explanations", key, run_all)

    def occlusion_tables(self, model_key: str, arch: str, table: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Keep ``table`` for this model; return it with the previous architecture's when both have the same rows."""
        self._memo["occlusion"].pop(model_key, None)  # re-inserted last: the most recent comes last
        self._memo["occlusion"][model_key] = (arch, table)
        recent = list(self._memo["occlusion"].values())[-2:]
        if len(recent) == 2 and recent[0][1].index.equals(recent[1][1].index):
            return dict(recent)
        return dict(recent[-1:])
