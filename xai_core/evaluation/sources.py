"""Where evaluated images come from: labelled images with their ground truth, batch by batch.

A source string names one of four kinds (``open_source``):

- ``embedded:SEED``: a fresh split of the embedded dataset (``xai_core.dataset``), sample ``i``
  being ``make_sample(SEED, i)``; ground truth: the object mask, or the part mask with
  ``ground_truth="part"`` (the badge of ``hexagon_dot`` / ``hexagon_cross``, the whole object otherwise);
- ``shortcut:SEED`` / ``shortcut-train:SEED``: the shortcut dataset (``xai_core.shortcut_dataset``),
  the same images with a corner cue independent of the label / naming it in 95 % of images; same
  ground truth (the cue lies outside the object);
- a folder ``dataset-export`` wrote (``labels.csv`` + ``masks/``): the masks it lists;
- an ImageFolder (``DIR/<class>/*.jpg``) with ``DIR/boxes.csv``: the object boxes, one row per
  box, in pixels of the original image, x1 and y1 exclusive (see ``xai_core.folder_dataset``)::

      path,x0,y0,x1,y1
      0/ILSVRC2012_val_00000293.JPEG,18,0,274,231
      1/ILSVRC2012_val_00002138.JPEG,0,64,213,335
      1/ILSVRC2012_val_00002138.JPEG,170,50,500,330

  An image with several rows has the union of its boxes as its mask and their bounding box as
  its box; an image with none has an empty mask (its localisation scores are NaN, left out of
  the means). A folder with neither masks nor boxes serves the metrics that need no ground truth.

Ground truth follows the image through the model's own preprocessing (``LoadedModel.preprocess``:
resize the shorter side to ``resize_size``, centre crop ``input_size``): a mask goes through the
same resize (bilinear, kept where at least half covered) and the same crop, and boxes are drawn
as a mask first (a pixel is inside when its centre is), so part of a box may fall outside the
crop. The box of every image is the bounding box of its mask in input coordinates
(``(0, 0, 0, 0)`` for an empty mask), so box and mask always agree.

Images are decoded only when their batch is loaded: a source holds paths and boxes, never pixels,
so a 50,000-image folder costs a list of paths.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from .. import dataset, shortcut_dataset
from ..errors import ParameterError
from ..folder_dataset import Box, LabelledFile, class_index, class_indices, read_labelled_folder
from ..imageio import load_image
from ..model_handle import LoadedModel

if TYPE_CHECKING:
    from ..metrics import GroundTruth

GROUND_TRUTHS = ("object", "part")
"""What the ground truth marks: the whole object, or its discriminative part (embedded data and its exports)."""

EMBEDDED_PREFIX = "embedded:"
SHORTCUT_PREFIX = "shortcut:"
SHORTCUT_TRAIN_PREFIX = "shortcut-train:"
SHORTCUT_SPLITS = {SHORTCUT_PREFIX: shortcut_dataset.DECORRELATED,
                   SHORTCUT_TRAIN_PREFIX: shortcut_dataset.TRAIN_AGREEMENT}
"""The shortcut dataset's splits by source prefix: the share of images whose cue names their class."""


@dataclass
class Batch:
    """Images of a source preprocessed for the model, with their labels and ground truth (on the CPU)."""
    indices: list[int]           # positions in the source
    ids: list[str]               # "embedded:SEED:INDEX", or the path relative to the folder
    images: torch.Tensor         # B×C×H×W, normalised for the model
    labels: torch.Tensor         # B, int64 classes of the model
    boxes: torch.Tensor | None   # B×4 int64 (x0, y0, x1, y1), x1, y1 exclusive; None without ground truth
    masks: torch.Tensor | None   # B×H×W bool; None without ground truth

    def ground_truth(self, device: torch.device | str) -> "GroundTruth":
        """The metrics' ``GroundTruth`` of this batch on ``device``."""
        from ..metrics import GroundTruth

        return GroundTruth(boxes=None if self.boxes is None else self.boxes.to(device),
                           masks=None if self.masks is None else self.masks.to(device))


class EvaluationSource(Protocol):
    """Labelled images with ground truth, loaded by position."""
    description: str
    has_ground_truth: bool

    def select(self, n: int) -> list[int]:
        """The positions of the ``n`` images an evaluation of ``n`` images uses."""

    def load(self, indices: Sequence[int]) -> Batch:
        """The images at ``indices``, preprocessed, with their labels and ground truth."""


def open_source(source: str, model: LoadedModel, ground_truth: str = "object") -> EvaluationSource:
    """The source ``source`` names (``embedded:SEED``, ``shortcut:SEED``, ``shortcut-train:SEED`` or a
    folder), prepared for ``model``."""
    if ground_truth not in GROUND_TRUTHS:
        raise ParameterError(f"Unknown ground truth '{ground_truth}'; choose one of {', '.join(GROUND_TRUTHS)}.")
    if source.startswith(EMBEDDED_PREFIX):
        return EmbeddedSource(model, _seed(source, EMBEDDED_PREFIX), ground_truth)
    for prefix in SHORTCUT_SPLITS:
        if source.startswith(prefix):
            return ShortcutSource(model, _seed(source, prefix), prefix, ground_truth)
    if not Path(source).is_dir():
        raise ParameterError(f"Data source '{source}' is neither embedded:SEED, shortcut:SEED, "
                             "shortcut-train:SEED nor a folder.")
    return FolderSource(model, source, ground_truth)


def _seed(source: str, prefix: str) -> int:
    """The SEED of ``PREFIXSEED``; ``ParameterError`` when it is not a non-negative integer."""
    seed = source[len(prefix):].strip()
    if not seed.isdigit():
        raise ParameterError(f"'{source}': a generated split is named {prefix}SEED, e.g. {prefix}3.")
    return int(seed)


# ------------------------------------------------------------------ geometry
def mask_to_input(model: LoadedModel, mask: np.ndarray) -> torch.Tensor:
    """A mask H×W of the original image → S×S bool in input coordinates, through the model's resize
    (bilinear, antialiased, kept where ≥ half covered) and centre crop."""
    from torchvision.transforms import functional as TF

    resized = TF.resize(torch.from_numpy(np.asarray(mask, dtype=np.float32))[None], model.resize_size,
                        interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(resized, [model.input_size, model.input_size])[0] >= 0.5


def boxes_to_mask(boxes: Sequence[Box], width: int, height: int) -> np.ndarray:
    """The union of ``boxes`` (original pixels, x1, y1 exclusive) as an H×W bool mask: the pixels
    whose centres lie inside a box."""
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        cols = slice(max(0, math.ceil(x0 - 0.5)), max(0, math.ceil(x1 - 0.5)))
        rows = slice(max(0, math.ceil(y0 - 0.5)), max(0, math.ceil(y1 - 0.5)))
        mask[rows, cols] = True
    return mask


def bounding_box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a bool H×W mask, x1, y1 exclusive; (0, 0, 0, 0) when it is empty."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _batch(indices: Sequence[int], ids: list[str], images: list[torch.Tensor], labels: list[int],
           masks: list[torch.Tensor] | None) -> Batch:
    return Batch(list(indices), ids, torch.stack(images), torch.tensor(labels, dtype=torch.long),
                 None if masks is None else torch.tensor([bounding_box(m) for m in masks], dtype=torch.long),
                 None if masks is None else torch.stack(masks))


# ------------------------------------------------------------------ sources
class _GeneratedSource:
    """A split generated from a seed: sample ``i`` is ``self._sample(i)``, its id ``PREFIXSEED:i``.

    Labels name the model's classes by name (the embedded model's) or, for any other model, by
    the dataset's class index.
    """
    has_ground_truth = True
    prefix: str

    def __init__(self, model: LoadedModel, seed: int, ground_truth: str = "object"):
        self.model, self.seed, self.ground_truth = model, seed, ground_truth
        self._classes = [_class_of(model, k) for k in range(len(dataset.CLASSES))]
        if None in self._classes:
            raise ParameterError(f"{model.name} has {model.num_classes} classes: too few for the embedded "
                                 f"dataset's {len(dataset.CLASSES)}.")

    def _sample(self, index: int) -> dataset.Sample:
        """Sample ``index`` of the split (each subclass generates its own)."""
        raise NotImplementedError

    def select(self, n: int) -> list[int]:
        """Samples 0 … n-1 (labels cycle through the classes, so every n is balanced)."""
        return list(range(n))

    def load(self, indices: Sequence[int]) -> Batch:
        """Generate the samples at ``indices``."""
        samples = [self._sample(i) for i in indices]
        masks = [mask_to_input(self.model, s.part_mask if self.ground_truth == "part" else s.object_mask)
                 for s in samples]
        return _batch(indices, [f"{self.prefix}{self.seed}:{i}" for i in indices],
                      [self.model.preprocess(s.pil()) for s in samples],
                      [self._classes[s.label] for s in samples], masks)


class EmbeddedSource(_GeneratedSource):
    """A fresh split of the embedded dataset by seed: sample ``i`` is ``make_sample(seed, i)``."""
    prefix = EMBEDDED_PREFIX

    def __init__(self, model: LoadedModel, seed: int, ground_truth: str = "object"):
        super().__init__(model, seed, ground_truth)
        self.description = f"embedded dataset, seed {seed}"

    def _sample(self, index: int) -> dataset.Sample:
        return dataset.make_sample(self.seed, index)


class ShortcutSource(_GeneratedSource):
    """A split of the shortcut dataset (``xai_core.shortcut_dataset``) by seed: ``shortcut:SEED``, the
    cue independent of the label, or ``shortcut-train:SEED``, the cue agreeing with it in 95 % of images.

    The ground truth is the object's (or part's), as in the embedded dataset: the cue is outside it.
    """

    def __init__(self, model: LoadedModel, seed: int, prefix: str, ground_truth: str = "object"):
        super().__init__(model, seed, ground_truth)
        self.prefix, self.agreement = prefix, SHORTCUT_SPLITS[prefix]
        split = "cue independent of the label" if prefix == SHORTCUT_PREFIX else f"cue = label in {self.agreement:.0%}"
        self.description = f"shortcut dataset, seed {seed} ({split})"

    def _sample(self, index: int) -> dataset.Sample:
        return shortcut_dataset.make_shortcut_sample(self.seed, index, self.agreement)


def _class_of(model: LoadedModel, k: int) -> int | None:
    """The model's class for the embedded dataset's class ``k``: by name, else by index."""
    by_name = class_index(model, dataset.CLASSES[k])
    return class_index(model, str(k)) if by_name is None else by_name


class FolderSource:
    """A labelled folder (``xai_core.folder_dataset``) with its masks (an export) or ``boxes.csv``."""

    def __init__(self, model: LoadedModel, directory: str | os.PathLike, ground_truth: str = "object"):
        self.model, self.root, self.ground_truth = model, Path(directory), ground_truth
        self.files = read_labelled_folder(directory)
        self.labels = class_indices(model, self.files, directory)
        has_masks = any(self._mask_file(f) is not None for f in self.files)
        if ground_truth == "part" and not has_masks:
            raise ParameterError(f"'{directory}' has no part masks: the part needs a dataset-export folder.")
        self.has_ground_truth = has_masks or any(f.boxes for f in self.files)
        self.description = f"folder {directory}"

    def _mask_file(self, file: LabelledFile) -> Path | None:
        return file.part_mask if self.ground_truth == "part" else file.object_mask

    def select(self, n: int) -> list[int]:
        """``n`` images evenly spaced over the folder's sorted list (all of them when ``n`` is its size),
        so a subset of a folder sorted by class still spans its classes."""
        total = len(self.files)
        if n > total:
            raise ParameterError(f"'{self.root}' holds {total} images; cannot evaluate {n}.")
        return [i * total // n for i in range(n)]

    def load(self, indices: Sequence[int]) -> Batch:
        """Decode and preprocess the images at ``indices`` and their ground truth."""
        files = [self.files[i] for i in indices]
        images = [load_image(f.path) for f in files]
        masks = ([mask_to_input(self.model, self._original_mask(f, image)) for f, image in zip(files, images)]
                 if self.has_ground_truth else None)
        return _batch(indices, [f.path.relative_to(self.root).as_posix() for f in files],
                      [self.model.preprocess(image) for image in images], [self.labels[i] for i in indices], masks)

    def _original_mask(self, file: LabelledFile, image: Image.Image) -> np.ndarray:
        mask_file = self._mask_file(file)
        if mask_file is None:
            return boxes_to_mask(file.boxes, *image.size)
        mask = np.asarray(Image.open(mask_file).convert("L")) > 127
        if mask.shape != (image.height, image.width):
            raise ParameterError(f"Mask '{mask_file}' is {mask.shape[1]}×{mask.shape[0]}, its image "
                                 f"{image.width}×{image.height}.")
        return mask
