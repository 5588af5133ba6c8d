"""The embedded model: ``EmbeddedNet`` on the procedural shapes dataset, its checkpoint shipped in the package."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .. import dataset, embedded
from ..errors import WeightsUnavailableError
from .checkpoints import head_weight
from .family import Preprocessing, Pretrained

EMBEDDED = "embedded"


class EmbeddedFamily:
    """One architecture, ``embedded``, whose width and classes a checkpoint may change."""

    names = (EMBEDDED,)

    def build(self, name: str, num_classes: int | None = None, **arch: int) -> nn.Module:
        """An ``EmbeddedNet``; ``arch`` may set its ``width``."""
        return embedded.EmbeddedNet(num_classes=num_classes or len(dataset.CLASSES), **arch)

    def architecture(self, name: str, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """Classes and width, both read from the linear head's weight (empty when there is no head)."""
        head = head_weight(self, name, state)
        if head is None:
            return {}
        return {"num_classes": head.shape[0], "width": embedded.width_from_head(head.shape[1])}

    def categories(self, name: str) -> list[str]:
        """The dataset's shape classes."""
        return list(dataset.CLASSES)

    def preprocessing(self, name: str) -> Preprocessing:
        """The dataset's statistics at its native size: no resize, no crop."""
        return Preprocessing(mean=tuple(dataset.MEAN), std=tuple(dataset.STD),
                             input_size=dataset.IMAGE_SIZE, resize_size=dataset.IMAGE_SIZE)

    def default_layer(self, name: str) -> str:
        """The last conv block (16×16 maps)."""
        return embedded.DEFAULT_LAYER

    def weights_path(self, name: str) -> Path:
        """The checkpoint inside the package (looked up on each call, so tests can point it elsewhere)."""
        return Path(embedded.CHECKPOINT)

    def load_pretrained(self, name: str, allow_download: bool) -> Pretrained:
        """The shipped checkpoint; nothing is ever downloaded."""
        path = self.weights_path(name)
        if not path.is_file():
            raise WeightsUnavailableError(
                f"The embedded model's checkpoint {path} is missing; run scripts/train_embedded.py.")
        return Pretrained(embedded.load_embedded("cpu", path), self.categories(name), f"checkpoint {path.name}")

    def description(self, name: str) -> str:
        """What the model is and why it is there."""
        return "Compact CNN trained on the procedural shapes dataset (ground-truth masks available)"


FAMILY = EmbeddedFamily()
