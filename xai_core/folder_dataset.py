"""Labelled image folders: what ``dataset-export`` writes, or a plain ImageFolder.

The one reader for every command and page that takes a folder of images (RIG's training
data, ``dataset-eval --data``). Two layouts, told apart by ``labels.csv``:

- an export (``python -m xai_core dataset-export``): ``DIR/labels.csv`` with an ``image``
  column (paths relative to ``DIR``) and a ``label`` column; the masks beside it are not read;
- an ImageFolder (torchvision's layout): ``DIR/<class>/*.png``, one subfolder per class.

A label (the CSV's value or the subfolder's name) names a class of the model by its name
(case-insensitive) or by its index; ``dataset-export`` writes the embedded dataset's class
indices, which are the embedded model's. Images are listed by path, so the same files give
the same tensors in the same order whichever layout describes them (an export's ``images/``
folder is itself an ImageFolder).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .engine import Engine
from .errors import ParameterError
from .imageio import load_image
from .model_handle import LoadedModel

LABELS_FILE = "labels.csv"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class LabelledFile:
    """One image file and its label as the folder writes it (a class name or index)."""
    path: Path
    label: str


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
    return sorted(files, key=lambda f: f.path)


def _from_labels_csv(root: Path, csv_path: Path) -> list[LabelledFile]:
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"image", "label"} <= set(reader.fieldnames or ()):
            raise ParameterError(f"'{csv_path}' needs the columns image and label, as dataset-export writes them.")
        rows = list(reader)
    files = []
    for row in rows:
        path = root / row["image"]
        if not path.is_file():
            raise ParameterError(f"'{csv_path}' lists '{row['image']}', which is not a file under '{root}'.")
        files.append(LabelledFile(path, row["label"].strip()))
    return files


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


def load_labelled(model: LoadedModel, directory: str | os.PathLike,
                  classes: Sequence[int] | None = None) -> LabelledImages:
    """The folder's images of ``classes``, preprocessed for ``model``.

    With ``classes`` None every image is kept and each label must name a class of the model;
    otherwise images of other labels are skipped.
    """
    files = read_labelled_folder(directory)
    resolved = [(f, class_index(model, f.label)) for f in files]
    if classes is None:
        unknown = sorted({f.label for f, c in resolved if c is None})
        if unknown:
            raise ParameterError(f"Labels in '{directory}' that are not classes of {model.name}: "
                                 f"{', '.join(unknown[:5])}{'...' if len(unknown) > 5 else ''}.")
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
