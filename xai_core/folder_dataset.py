"""Labelled image folders: what ``dataset-export`` writes, or a plain ImageFolder.

The one reader for every command and page that takes a folder of images (RIG's training
data, ``dataset-eval --data``, ``evaluate --data``). Two layouts, told apart by ``labels.csv``:

- an export (``python -m xai_core dataset-export``): ``DIR/labels.csv`` with an ``image``
  column (paths relative to ``DIR``) and a ``label`` column; its optional ``object_mask`` and
  ``part_mask`` columns name the ground-truth masks (0/255 PNGs, relative to ``DIR``);
- an ImageFolder (torchvision's layout): ``DIR/<class>/*.png``, one subfolder per class.

Either layout may carry object boxes in ``DIR/boxes.csv``, the format ImageNet users convert
their XML boxes to: one row per box, in pixels of the original image, ``x0, y0`` the first
pixel inside and ``x1, y1`` the first one past it (exclusive); an image may have several rows
(several objects) or none::

    path,x0,y0,x1,y1
    0/ILSVRC2012_val_00000293.JPEG,18,0,274,231
    1/ILSVRC2012_val_00002138.JPEG,0,64,213,335
    1/ILSVRC2012_val_00002138.JPEG,170,50,500,330

``path`` is relative to ``DIR``, as in ``labels.csv``.

A label (the CSV's value or the subfolder's name) names a class of the model by its name
(case-insensitive) or by its index; ``dataset-export`` writes the embedded dataset's class
indices, which are the embedded model's. Images are listed by path, so the same files give
the same tensors in the same order whichever layout describes them (an export's ``images/``
folder is itself an ImageFolder).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch

from .engine import Engine
from .errors import ParameterError
from .imageio import load_image
from .model_handle import LoadedModel

LABELS_FILE = "labels.csv"
BOXES_FILE = "boxes.csv"
BOX_COLUMNS = ("x0", "y0", "x1", "y1")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


Box = tuple[float, float, float, float]
"""(x0, y0, x1, y1) in pixels of the original image; x1, y1 exclusive."""


@dataclass(frozen=True)
class LabelledFile:
    """One image file, its label as the folder writes it (a class name or index), and the
    ground truth the folder gives for it: mask files (an export's) and boxes (``boxes.csv``)."""
    path: Path
    label: str
    object_mask: Path | None = None
    part_mask: Path | None = None
    boxes: tuple[Box, ...] = ()


@dataclass
class LabelledImages:
    """Images of a folder preprocessed for a model; rows follow ``paths``."""
    images: torch.Tensor     # N×C×H×W, normalised for the model, on the CPU
    labels: torch.Tensor     # N, int64 class indices of the model
    paths: list[Path]


def read_labelled_folder(directory: str | os.PathLike) -> list[LabelledFile]:
    """Every labelled image of ``directory`` (either layout), sorted by path."""
    root = Path(directory)
    if not root.is_dir():
        raise ParameterError(f"Dataset folder '{root}' does not exist.")
    csv_path = root / LABELS_FILE
    files = _from_labels_csv(root, csv_path) if csv_path.is_file() else _from_class_folders(root)
    if not files:
        raise ParameterError(f"'{root}' holds no labelled images: give the folder dataset-export wrote "
                             f"(with {LABELS_FILE}) or one with a subfolder of images per class.")
    if (root / BOXES_FILE).is_file():
        files = _with_boxes(root, root / BOXES_FILE, files)
    return sorted(files, key=lambda f: f.path)


def _from_labels_csv(root: Path, csv_path: Path) -> list[LabelledFile]:
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"image", "label"} <= set(reader.fieldnames or ()):
            raise ParameterError(f"'{csv_path}' needs the columns image and label, as dataset-export writes them.")
        rows = list(reader)
    return [LabelledFile(_listed_file(root, csv_path, row["image"]), row["label"].strip(),
                         object_mask=_listed_file(root, csv_path, row.get("object_mask")),
                         part_mask=_listed_file(root, csv_path, row.get("part_mask")))
            for row in rows]


def _listed_file(root: Path, csv_path: Path, relative: str | None) -> Path | None:
    """The file a CSV cell names under ``root`` (None for an empty or absent cell)."""
    if not relative:
        return None
    path = root / relative.strip()
    if not path.is_file():
        raise ParameterError(f"'{csv_path}' lists '{relative}', which is not a file under '{root}'.")
    return path


def _with_boxes(root: Path, csv_path: Path, files: list[LabelledFile]) -> list[LabelledFile]:
    """``files`` with the boxes ``boxes.csv`` gives them (several rows for one image: several boxes)."""
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"path", *BOX_COLUMNS} <= set(reader.fieldnames or ()):
            raise ParameterError(f"'{csv_path}' needs the columns path,{','.join(BOX_COLUMNS)}.")
        rows = list(reader)
    boxes: dict[Path, list[Box]] = {}
    for line, row in enumerate(rows, start=2):
        path = _listed_file(root, csv_path, row["path"])
        try:
            box = tuple(float(row[c]) for c in BOX_COLUMNS)
        except (TypeError, ValueError):
            raise ParameterError(f"'{csv_path}' line {line}: x0,y0,x1,y1 must be numbers.") from None
        if not (box[0] < box[2] and box[1] < box[3]):
            raise ParameterError(f"'{csv_path}' line {line}: a box needs x0 < x1 and y0 < y1, got {box}.")
        boxes.setdefault(path, []).append(box)
    unknown = set(boxes) - {f.path for f in files}
    if unknown:
        raise ParameterError(f"'{csv_path}' gives boxes for '{sorted(unknown)[0]}', which is not a labelled "
                             f"image of '{root}'.")
    return [replace(f, boxes=tuple(boxes.get(f.path, ()))) for f in files]


def _from_class_folders(root: Path) -> list[LabelledFile]:
    return [LabelledFile(path, folder.name) for folder in root.iterdir() if folder.is_dir()
            for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]


def class_index(model: LoadedModel, label: str) -> int | None:
    """The model's class that ``label`` names (its name, case-insensitive, or its index); None if none."""
    wanted = label.strip().lower()
    names = [c.lower() for c in model.categories]
    if wanted in names:
        return names.index(wanted)
    if wanted.isdigit() and int(wanted) < model.num_classes:
        return int(wanted)
    return None


def class_indices(model: LoadedModel, files: Sequence[LabelledFile], directory: str | os.PathLike) -> list[int]:
    """The model's class of every file; ParameterError naming the labels that are none of its classes."""
    resolved = [class_index(model, f.label) for f in files]
    unknown = sorted({f.label for f, c in zip(files, resolved) if c is None})
    if unknown:
        raise ParameterError(f"Labels in '{directory}' that are not classes of {model.name}: "
                             f"{', '.join(unknown[:5])}{'...' if len(unknown) > 5 else ''}.")
    return resolved


def load_labelled(model: LoadedModel, directory: str | os.PathLike,
                  classes: Sequence[int] | None = None) -> LabelledImages:
    """The folder's images of ``classes``, preprocessed for ``model``.

    With ``classes`` None every image is kept and each label must name a class of the model;
    otherwise images of other labels are skipped.
    """
    files = read_labelled_folder(directory)
    labels = (class_indices(model, files, directory) if classes is None
              else [class_index(model, f.label) for f in files])
    resolved = list(zip(files, labels))
    wanted = set(range(model.num_classes)) if classes is None else {int(c) for c in classes}
    kept = [(f, c) for f, c in resolved if c in wanted]
    size = model.input_size
    images = (torch.stack([model.preprocess(load_image(f.path)) for f, _ in kept]) if kept
              else torch.empty(0, 3, size, size))
    return LabelledImages(images, torch.tensor([c for _, c in kept], dtype=torch.long), [f.path for f, _ in kept])


def evaluate_folder(model: LoadedModel, directory: str | os.PathLike, engine: Engine | None = None) -> dict:
    """Accuracy of ``model`` on a labelled folder: ``{accuracy, per_class (by class name), n}``,
    the keys of ``dataset.evaluate``."""
    data = load_labelled(model, directory)
    engine = engine or Engine(model.device)

    def predict(start: int, stop: int) -> torch.Tensor:
        with torch.no_grad():
            return model.module(data.images[start:stop].to(model.device)).argmax(1)

    predicted = engine.map_cat(predict, len(data.labels), section="logits", key=f"evaluate:{model.name}").cpu()
    correct = predicted == data.labels
    per_class = {model.categories[c]: float(correct[data.labels == c].float().mean())
                 for c in sorted(set(data.labels.tolist()))}
    return {"accuracy": float(correct.float().mean()), "per_class": per_class, "n": len(data.labels)}
