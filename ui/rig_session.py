"""What the IG and RIG page remembers within one browser session, so that a rerun (any widget
change) recomputes nothing it already has.

The page runs RIG on one or two architectures (the sidebar's model and a second one picked on
the page), each an ``Architecture``. Generating or reading the training images takes seconds,
training minutes and explaining every network tens of seconds, so each is kept under a key of
everything that determines it: the training images per (preprocessing, pair, source); the support
networks and their accuracy table per ``TrainingRequest`` (which names the model); the
explanations per (request, image, count, τ, steps). A second model that failed to load is
remembered too, so that a rerun does not retry it while it stays chosen. Training itself stays
on disk across sessions (``xai_core.rig.store``, keyed per architecture and weights).

Memory is bounded for the whole server, not per session: the values live once in shared stores
(``ui.shared_store``), one per kind, bounded by entries and bytes; a session holds only its keys
(a ``SessionView`` per kind in ``st.session_state``). Without this, every settings change kept
another set of support networks in the tab (+490 MB per change, issue 15). An evicted set
is read back from the disk store when asked for again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, MutableMapping, Sequence

import torch
from PIL import Image

from xai_core import dataset, rig
from xai_core.engine import Engine, Progress
from xai_core.errors import ParameterError, XAIError
from xai_core.model_handle import LoadedModel

from .shared_store import SessionView, SharedStore

STATE_KEY = "rig"
SHARED_BOUNDS = {  # kind: (entries, bytes) held for all sessions together
    "data": (8, 1 << 30),            # training and validation images (2,000 embedded images are 120 MB)
    "supports": (4, 3 << 30),        # two architectures × two settings; one VGG16 set of four is 2.1 GB
    "accuracy": (64, 16 << 20),      # tables of a few rows
    "explanations": (32, 512 << 20),  # K+1 networks × 2 classes × H×W per image, up to 6 images
}
SHARED = {kind: SharedStore(entries, size) for kind, (entries, size) in SHARED_BOUNDS.items()}
"""The stores every session of this process reads (module-level: imported once per server)."""
NO_SECOND_MODEL = "(none)"
SECOND_MODELS = {"resnet18": ("vgg16",), "vgg16": ("resnet18",)}  # the paper's two architectures
EMBEDDED_SECOND_MODELS = ("embedded_resnet", "embedded_vgg", "embedded")


@dataclass(frozen=True)
class TrainingRequest:
    """Everything that determines one set of support networks, as the page asks for it."""
    model_key: str
    data_key: Hashable        # ``RigSession.data_key`` of the training images: same key, same images
    alphas: tuple[float, ...]
    lr: float
    epochs: int


@dataclass(frozen=True)
class Architecture:
    """One model the page runs RIG on, with its own indices of the pair and its own view of the image."""
    label: str
    model: LoadedModel
    model_key: str
    classes: tuple[int, int]
    x: torch.Tensor           # the selected image, ``model.preprocess``-ed


def second_model_default(first: LoadedModel, names: Sequence[str], available: Sequence[str]) -> str:
    """The second architecture offered first: the paper's other one for ResNet-18 / VGG16, another
    embedded model for an embedded one (preferring those whose weights are ``available``), else none."""
    wanted = EMBEDDED_SECOND_MODELS if rig.uses_embedded_dataset(first) else SECOND_MODELS.get(first.name, ())
    candidates = [n for n in wanted if n in names and n != first.name]
    ready = [n for n in candidates if n in available]
    return (ready or candidates or [NO_SECOND_MODEL])[0]


def architectures(models: Sequence[tuple[str, LoadedModel]], classes: Sequence[int | str], image: Image.Image,
                  x: torch.Tensor) -> tuple[list[Architecture], list[str]]:
    """The (model key, model) pairs as ``Architecture``s for the pair ``classes`` of the first model
    (whose errors raise), ``x`` being its input; each other model matched by class name, or left out
    with a message saying why."""
    (first_key, first), others = models[0], models[1:]
    kept = [(first_key, first, rig.class_pair(first, classes))]
    notes = []
    for key, model in others:
        try:
            kept.append((key, model, rig.matched_pair([first, model], classes)[1]))
        except ParameterError as err:
            notes.append(f"{err} Showing {first.name} alone.")
    labels = rig.architecture_labels([model for _, model, _ in kept])
    return [Architecture(label, model, key, pair, model.preprocess(image) if i else x)
            for i, (label, (key, model, pair)) in enumerate(zip(labels, kept))], notes


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
    """Page 3's memory in ``st.session_state`` (any mutable mapping, for tests): per kind the keys
    this session asked for, the values in ``stores`` (default: the server's ``SHARED``)."""

    def __init__(self, state: MutableMapping[str, Any], stores: dict[str, SharedStore] | None = None):
        stores = SHARED if stores is None else stores
        self._memo: dict[str, Any] = state.setdefault(STATE_KEY, {})
        for kind, store in stores.items():
            if not isinstance(self._memo.get(kind), SessionView):
                self._memo[kind] = SessionView(store)
        self._memo.setdefault("failed_load", {})

    def _remember(self, kind: str, key: Hashable, compute: Callable[[], Any]) -> Any:
        return self._memo[kind].remember(key, compute)

    def second_model(self, key: str | None, load: Callable[[], LoadedModel]) -> LoadedModel | None:
        """``load()`` for the second architecture chosen under ``key`` (None: no second one); a load
        that failed raises its error again, without retrying, while the same one stays chosen."""
        failed = self._memo["failed_load"]
        if key in failed:
            raise failed[key]
        failed.clear()
        if key is None:
            return None
        try:
            return load()
        except XAIError as err:
            failed[key] = err
            raise

    @staticmethod
    def data_key(model: LoadedModel, classes: tuple[int, int], *, folder: str | None, seed: int,
                 n: int) -> Hashable:
        """What determines the training images without making them (generated images are seeded):
        the pair and source, and how the model sees images (the embedded architectures alike)."""
        source = (folder,) if folder else (seed, n)
        sees = (tuple(model.categories), tuple(model.mean), tuple(model.std), model.input_size, model.resize_size,
                model.interpolation)
        return (sees, classes, *source)

    def training_sets(self, model: LoadedModel, classes: tuple[int, int], *, folder: str | None, seed: int,
                      n: int) -> tuple[rig.TrainingData, rig.TrainingData]:
        """``rig.training_sets``, once per ``data_key``."""
        return self._remember("data", self.data_key(model, classes, folder=folder, seed=seed, n=n),
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
