"""The embedded models: four architectures trained on the procedural shapes dataset, checkpoints in the package.

``embedded`` (GAP CNN, the app's default), ``embedded_vgg`` (max-pooling + dense head: CAM does
not apply), ``embedded_resnet`` (residual blocks + batch norm, GAP head) and ``embedded_vit``
(a small vision transformer). All share the dataset's classes, preprocessing and checkpoint
format (``embedded.save_embedded``); each is written to ``xai_core/assets/<name>.pt`` by
``scripts/train_embedded.py --arch NAME``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from .. import dataset, embedded, embedded_resnet, embedded_vgg, embedded_vit
from ..errors import WeightsUnavailableError
from .checkpoints import head_weight, with_weights
from .family import Preprocessing, Pretrained

EMBEDDED = "embedded"


@dataclass(frozen=True)
class EmbeddedArchitecture:
    """How to build one embedded architecture and read its constructor arguments back from a state dict."""

    build: Callable[..., nn.Module]
    hyperparameters: Callable[[Mapping[str, torch.Tensor]], dict[str, int]]
    default_layer: str
    description: str


ARCHITECTURES: dict[str, EmbeddedArchitecture] = {
    EMBEDDED: EmbeddedArchitecture(
        embedded.EmbeddedNet, embedded.hyperparameters, embedded.DEFAULT_LAYER,
        "Compact CNN trained on the procedural shapes dataset (ground-truth masks available)"),
    "embedded_vgg": EmbeddedArchitecture(
        embedded_vgg.EmbeddedVGG, embedded_vgg.hyperparameters, embedded_vgg.DEFAULT_LAYER,
        "VGG-style CNN (max-pooling, fully connected head: no CAM) on the procedural shapes dataset"),
    "embedded_resnet": EmbeddedArchitecture(
        embedded_resnet.EmbeddedResNet, embedded_resnet.hyperparameters, embedded_resnet.DEFAULT_LAYER,
        "ResNet-style CNN (residual blocks, batch norm, GAP head) on the procedural shapes dataset"),
    "embedded_vit": EmbeddedArchitecture(
        embedded_vit.EmbeddedViT, embedded_vit.hyperparameters, embedded_vit.DEFAULT_LAYER,
        "Small vision transformer (conv patch embedding, class token, 4 blocks) on the procedural shapes dataset"),
}


class EmbeddedFamily:
    """The embedded architectures, whose widths and classes a checkpoint may change."""

    names = tuple(ARCHITECTURES)
    prefix = ""

    def build(self, name: str, num_classes: int | None = None, **arch: int) -> nn.Module:
        """The architecture with fresh weights; ``arch`` may set its widths (see each constructor)."""
        return ARCHITECTURES[name].build(num_classes=num_classes or len(dataset.CLASSES), **arch)

    def architecture(self, name: str, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """Classes from the final linear layer's weight, widths from the layers that show them
        (empty when there is no head: the strict load then lists what is missing)."""
        head = head_weight(self, name, state)
        if head is None:
            return {}
        return {"num_classes": head.shape[0], **ARCHITECTURES[name].hyperparameters(state)}

    def categories(self, name: str) -> list[str]:
        """The dataset's shape classes."""
        return list(dataset.CLASSES)

    def preprocessing(self, name: str) -> Preprocessing:
        """The dataset's statistics at its native size: no resize, no crop."""
        return Preprocessing(mean=tuple(dataset.MEAN), std=tuple(dataset.STD),
                             input_size=dataset.IMAGE_SIZE, resize_size=dataset.IMAGE_SIZE)

    def default_layer(self, name: str) -> str:
        """The last conv feature map; for the ViT, the last block's ``norm1`` (its token grid)."""
        return ARCHITECTURES[name].default_layer

    def weights_path(self, name: str) -> Path:
        """``assets/<name>.pt`` beside ``embedded.CHECKPOINT`` (looked up on each call, so tests can move it)."""
        checkpoint = Path(embedded.CHECKPOINT)
        return checkpoint if name == EMBEDDED else checkpoint.with_name(f"{name}.pt")

    def load_pretrained(self, name: str, allow_download: bool) -> Pretrained:
        """The shipped checkpoint; nothing is ever downloaded."""
        path = self.weights_path(name)
        if not path.is_file():
            raise WeightsUnavailableError(f"The {name} model's checkpoint {path} is missing; "
                                          f"run scripts/train_embedded.py --arch {name}.")
        state = embedded.read_embedded(path)
        module = with_weights(self, name, state, path.name, **self.architecture(name, state))
        return Pretrained(module.eval(), self.categories(name), f"checkpoint {path.name}")

    def description(self, name: str) -> str:
        """What the model is and why it is there."""
        return ARCHITECTURES[name].description


FAMILY = EmbeddedFamily()
