"""RIG's training and validation images of two classes, and the policy that splits them.

Two sources: freshly generated images of the embedded dataset (validation: the next seed,
a quarter as many, at least 64), or a labelled folder (``folder_dataset``: what
``dataset-export`` writes, or an ImageFolder), of which every fifth image of each class is
held out for validation.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .. import dataset
from ..errors import ParameterError
from ..folder_dataset import load_labelled
from ..methods.base import Param
from ..model_handle import LoadedModel
from .defaults import DEFAULT_N, DEFAULT_SEED

HELD_OUT_EVERY = 5          # of a folder's images of each class, every fifth (sorted by path) is held out
MIN_EMBEDDED_VALIDATION = 64
GENERATED_IMAGES = Param(int, DEFAULT_N, 2, 20_000, help="embedded-dataset images generated for RIG")
"""The bound of one generated split: all of it is held in memory (20,000 images are 1 GB as float32)
and every image is seen by every network on every epoch."""


@dataclass
class TrainingData:
    """Images of the two classes RIG compares, with their labels and where they came from."""
    images: torch.Tensor        # N×C×H×W, normalised for the model, on the CPU
    labels: torch.Tensor        # N, the model's class index of each image (one of ``classes``)
    classes: tuple[int, int]
    source: str                 # human-readable origin

    def __post_init__(self) -> None:
        counts = [int((self.labels == c).sum()) for c in self.classes]
        if min(counts) == 0:
            raise ParameterError(f"RIG needs images of both classes; got {counts[0]} and {counts[1]}.")

    @property
    def identity(self) -> str:
        """A digest of the exact tensors: same digest ⇔ same training set."""
        digest = hashlib.sha256(self.images.contiguous().numpy().tobytes())
        digest.update(self.labels.numpy().astype(np.int64).tobytes())
        return digest.hexdigest()


def class_pair(model: LoadedModel, classes: Sequence[int | str]) -> tuple[int, int]:
    """The two different classes RIG compares, as indices (names or indices accepted)."""
    pair = model.resolve_targets(list(classes))
    if len(pair) != 2 or pair[0] == pair[1]:
        raise ParameterError("RIG compares two different classes, e.g. cat,dog or 6,7.")
    return pair[0], pair[1]


def uses_embedded_dataset(model: LoadedModel) -> bool:
    """Whether the embedded dataset can train this model's support networks (it has its classes)."""
    return list(model.categories) == list(dataset.CLASSES)


def embedded_data(model: LoadedModel, classes: Sequence[int], seed: int, n: int) -> TrainingData:
    """``n`` freshly generated images of the embedded dataset's two ``classes`` (seeded), ``n`` within
    ``GENERATED_IMAGES``' bounds."""
    n = GENERATED_IMAGES.parse("n", n)
    if not uses_embedded_dataset(model):
        raise ParameterError("The embedded dataset trains only a model with its classes; give a folder of images.")
    batch = dataset.samples(seed, n, classes=list(classes))
    images = dataset.normalize(np.stack([s.image for s in batch]), model.mean, model.std)
    return TrainingData(images, torch.tensor([s.label for s in batch], dtype=torch.long),
                        (int(classes[0]), int(classes[1])), f"embedded dataset, seed {seed}, n {n}")


def _held_out(position: int, count: int) -> bool:
    """Every fifth image of a class; with fewer than five, its last one, so that both splits have it."""
    return position % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 or (count < HELD_OUT_EVERY and position == count - 1)


def folder_data(model: LoadedModel, directory: str | os.PathLike,
                classes: Sequence[int]) -> tuple[TrainingData, TrainingData]:
    """(train, validation) of the two ``classes`` from a labelled folder (``folder_dataset``)."""
    loaded = load_labelled(model, directory, classes)
    pair = (int(classes[0]), int(classes[1]))
    rows: dict[str, list[int]] = {"train": [], "validation": []}
    for c in pair:
        members = torch.nonzero(loaded.labels == c).flatten().tolist()
        if len(members) < 2:
            raise ParameterError(f"'{directory}' needs at least two images of '{model.categories[c]}' "
                                 f"(found {len(members)}).")
        for position, row in enumerate(members):
            rows["validation" if _held_out(position, len(members)) else "train"].append(row)
    train, val = (TrainingData(loaded.images[rows[name]], loaded.labels[rows[name]], pair, f"{directory} ({name})")
                  for name in ("train", "validation"))
    return train, val


def _embedded_training(model: LoadedModel, classes: Sequence[int], seed: int, n: int) -> TrainingData:
    if not uses_embedded_dataset(model):
        raise ParameterError(f"{model.name} needs a folder of training images of the two classes "
                             "(the embedded dataset has other classes).")
    return embedded_data(model, classes, seed, n)


def training_sets(model: LoadedModel, classes: Sequence[int], *, folder: str | os.PathLike | None = None,
                  seed: int = DEFAULT_SEED, n: int = DEFAULT_N) -> tuple[TrainingData, TrainingData]:
    """(train, validation) for the pair: from ``folder`` when given, else from the embedded dataset
    (``seed``, ``n`` training images; validation from seed + 1, n / 4 images, at least 64)."""
    if folder:
        return folder_data(model, folder, classes)
    return (_embedded_training(model, classes, seed, n),
            embedded_data(model, classes, seed + 1, max(MIN_EMBEDDED_VALIDATION, n // 4)))
