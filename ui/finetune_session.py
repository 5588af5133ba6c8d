"""The fine-tuning run of page 7 across reruns: start, one epoch at a time, Stop, Resume, results.

The run lives in ``st.session_state`` (as page 4's inversions: see ``inversion_session``), so a
click that interrupts the script keeps every completed epoch. ``advance`` trains epoch after
epoch while the run is ``active``; an epoch interrupted half-way keeps the optimiser steps it
made in the weights, but is not recorded, and Resume trains that epoch again (the same
shuffled order: the order is seeded by the epoch's index).

Between reruns the fine-tuned copy and its optimiser state are host tensors: a run on a GPU
moves them to the device for an epoch and back, so an idle session holds no device memory.
The shared model is never touched (``finetune.trainable_copy`` trains a deep copy).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Callable, MutableMapping

import numpy as np
import torch
from torch import nn

from xai_core import dataset, shortcut_dataset
from xai_core.engine import Engine, Progress
from xai_core.errors import ParameterError
from xai_core.finetune import EpochRecord, FinetuneConfig, train_epoch
from xai_core.finetune.losses import localisation_terms, saliency_maps
from xai_core.finetune.training import Split, evaluate_split, make_optimizer, trainable_copy
from xai_core.metrics.localisation import pointing_hits
from xai_core.model_handle import LoadedModel

from .stepped_session import SteppedSession

STATE_KEY = "ft.state"
GALLERY_SIZE = 4
"""Validation images shown before/after: those whose Grad-CAM MAGTR was lowest before fine-tuning."""
_USES_K = {"weighted": ("k1", "k2"), "weighted_mangtr": ("k1", "k2", "k3")}


def shortcut_splits(n_train: int, n_val: int, train_seed: int, val_seed: int,
                    agreement: float = shortcut_dataset.TRAIN_AGREEMENT) -> tuple[Split, Split]:
    """(train, val): shortcut images of ``train_seed`` whose cue agrees with the label in ``agreement`` of
    them (``shortcut-train:SEED`` at the default) and ``shortcut:VAL_SEED`` (the cue independent of the
    label), each as (x, labels, object masks)."""
    if n_train < 1 or n_val < 1:
        raise ParameterError("Fine-tuning needs at least one training and one validation image.")
    train = shortcut_dataset.shortcut_tensors(train_seed, n_train, agreement)[:3]
    val = shortcut_dataset.shortcut_tensors(val_seed, n_val, shortcut_dataset.DECORRELATED)[:3]
    return train, val


def check_shortcut_model(model: LoadedModel) -> None:
    """``ParameterError`` unless ``model`` reads the shortcut dataset: the embedded classes at its size."""
    if list(model.categories) != list(dataset.CLASSES) or model.input_size != dataset.IMAGE_SIZE:
        raise ParameterError(f"{model.name} does not classify the embedded shapes at {dataset.IMAGE_SIZE}×"
                             f"{dataset.IMAGE_SIZE} ({model.num_classes} classes, input {model.input_size} px); "
                             "choose an embedded model in the sidebar, or the shipped shortcut model.")


def check_weights(config: FinetuneConfig) -> None:
    """``ParameterError`` when the weighted loss form's coefficients are all zero (a constant loss)."""
    used = _USES_K.get(config.form, ())
    if used and all(getattr(config, k) == 0 for k in used):
        raise ParameterError(f"The coefficients {', '.join(used)} are all zero: the loss would be constant and "
                             "nothing would train.")


def predictions(module: nn.Module, x: torch.Tensor, batch: int, device: torch.device) -> np.ndarray:
    """The predicted class of each image (host int array), in eval mode without gradients."""
    module.eval()
    with torch.no_grad():
        return torch.cat([module(x[i:i + batch].to(device)).argmax(dim=1).cpu()
                          for i in range(0, len(x), batch)]).numpy()


def gradcam_maps(module: nn.Module, split: Split, layer: str, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(maps N×H×W, per-image MAGTR N) of Grad-CAM for the true class, as the loss computes them."""
    x, labels, masks = split
    module.eval()
    _, maps = saliency_maps(module, x.to(device), labels.to(device), layer=layer, create_graph=False)
    magtr = localisation_terms(maps.detach(), masks.to(device))["magtr"]
    return maps.detach().cpu().numpy(), magtr.cpu().numpy()


def confusion(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """classes×classes counts: row = true class, column = predicted class."""
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


@dataclass
class Snapshot:
    """The model's state on the validation split at one moment (before, or after fine-tuning)."""
    record: EpochRecord
    confusion: np.ndarray
    gallery_maps: np.ndarray             # GALLERY_SIZE×H×W Grad-CAM maps of the gallery images
    cue_accuracy: float                  # accuracy on the training split, where the cue agrees with the label
    pointing_game: float                 # share of validation maps whose maximum is on the object


@dataclass
class FinetuneRun:
    """One run: its settings, the trained copy (host tensors between reruns), its curves and snapshots."""
    config: FinetuneConfig
    epochs: int
    train: Split
    val: Split
    module: nn.Module
    optimizer: torch.optim.Optimizer
    engine: Engine                       # the shared engine of the model's device (``ui.cache.get_engine``)
    before: Snapshot
    gallery: np.ndarray                  # indices into val, lowest Grad-CAM MAGTR before first
    records: list[EpochRecord] = field(default_factory=list)
    after: Snapshot | None = None

    @property
    def epochs_done(self) -> int:
        """Completed epochs (each has a train and a val record)."""
        return sum(r.split == "val" for r in self.records)

    @property
    def finished(self) -> bool:
        """Whether every epoch is done."""
        return self.epochs_done >= self.epochs


def _to(module: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move the copy and its optimiser's state (Adam's moments) to ``device``, in place."""
    module.to(device)
    for state in optimizer.state.values():
        for name, value in state.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:   # Adam's step counter stays on the host
                state[name] = value.to(device)


def _snapshot(module: nn.Module, train: Split, val: Split, gallery: np.ndarray, config: FinetuneConfig,
              engine: Engine, classes: int, epoch: int) -> Snapshot:
    record = evaluate_split(module, val, config, engine, epoch=epoch)
    predicted = predictions(module, val[0], config.micro_batch, engine.device)
    on_cue = predictions(module, train[0], config.micro_batch, engine.device)
    maps, _ = gradcam_maps(module, val, config.layer, engine.device)
    hits = pointing_hits(torch.from_numpy(maps), val[2].bool(), 0.0)  # the Evaluate page's pointing game
    return Snapshot(record, confusion(val[1].numpy(), predicted, classes), maps[gallery],
                    cue_accuracy=float((on_cue == train[1].numpy()).mean()), pointing_game=float(hits.float().mean()))


class FinetuneSession(SteppedSession):
    """Page 7's run, kept in ``state`` (``st.session_state``), driven by ``inversion_controls.stop_resume_advance``."""

    def __init__(self, state: MutableMapping[str, Any], on_epoch: Callable[[FinetuneRun], None] | None = None):
        """``on_epoch(run)`` is called after every completed epoch (the page redraws its curves live)."""
        super().__init__(state, STATE_KEY, {"run": None})
        self.on_epoch = on_epoch

    @property
    def run(self) -> FinetuneRun | None:
        """The current run, if one was started."""
        return self._state["run"]

    @property
    def unfinished(self) -> bool:
        """Whether the run has epochs left."""
        return self.run is not None and not self.run.finished

    def start(self, model: LoadedModel, config: FinetuneConfig, epochs: int, train: Split, val: Split,
              engine: Engine) -> None:
        """A new run of ``epochs`` on a copy of ``model``; ``ParameterError`` (no run replaced) for an
        impossible setting. Scores the copy on ``val`` before any step."""
        config.validate()
        check_weights(config)
        if epochs < 1:
            raise ParameterError("Fine-tuning needs at least one epoch.")
        module = trainable_copy(model, config, engine.device)
        optimizer = make_optimizer(module, config)
        _, magtr = gradcam_maps(module, val, config.layer, engine.device)
        gallery = np.argsort(magtr, kind="stable")[:GALLERY_SIZE]
        before = _snapshot(module, train, val, gallery, config, engine, len(model.categories), epoch=-1)
        _to(module, optimizer, torch.device("cpu"))
        self._state.update(run=FinetuneRun(config, epochs, train, val, module, optimizer, engine, before, gallery),
                           active=True)

    def advance(self, progress: Progress) -> None:
        """Train the remaining epochs (``progress`` may interrupt one: completed epochs are kept and the
        run stays active); when all are done, score the result and deactivate."""
        run = self.run
        engine = run.engine
        _to(run.module, run.optimizer, engine.device)
        try:
            while not run.finished:
                epoch = run.epochs_done

                def epoch_progress(fraction: float, message: str) -> None:
                    progress((epoch + fraction) / run.epochs, message)

                trained = train_epoch(run.module, run.optimizer, run.train, run.config, engine, epoch=epoch,
                                      progress=epoch_progress)
                run.records += [trained, evaluate_split(run.module, run.val, run.config, engine, epoch=epoch)]
                if self.on_epoch is not None:
                    self.on_epoch(run)
            run.after = _snapshot(run.module, run.train, run.val, run.gallery, run.config, engine,
                                  len(run.before.confusion), epoch=run.epochs - 1)
            self._state["active"] = False
        finally:
            _to(run.module, run.optimizer, torch.device("cpu"))


def checkpoint_bytes(module: nn.Module) -> bytes:
    """The state dict of ``module`` (host tensors) as ``torch.save`` writes it: loadable with
    ``load_model(name, checkpoint=...)``."""
    buffer = io.BytesIO()
    torch.save({name: value.detach().cpu() for name, value in module.state_dict().items()}, buffer)
    return buffer.getvalue()
