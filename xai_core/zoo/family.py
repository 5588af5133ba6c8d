"""What every model family answers, so that the registry (``xai_core.models``) needs no case per family.

A family is a set of architectures built the same way: torchvision's ImageNet classifiers,
the embedded dataset's CNN. Adding one is a module with a class that satisfies ``ModelFamily``
and one line in ``zoo.FAMILIES``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the tensor the network was trained on."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int       # side of the square tensor fed to the network
    resize_size: int      # shorter side before the centre crop (= input_size: no crop)
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class Pretrained:
    """A module holding a family's own trained weights, and what they predict."""

    module: nn.Module
    categories: list[str]
    source: str           # human-readable, shown on the model card


class ModelFamily(Protocol):
    """The questions the registry asks each family about one of its architecture names."""

    names: tuple[str, ...]
    prefix: str  # "" for a closed set of names; else every name starting with it is the family's ("timm:")

    def build(self, name: str, num_classes: int | None = None, **arch: int) -> nn.Module:
        """The architecture with fresh weights; ``num_classes=None`` means the family's own classes."""

    def architecture(self, name: str, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """Constructor arguments of ``build`` that ``state`` was saved from (classes, widths)."""

    def categories(self, name: str) -> list[str]:
        """The class names the family's own weights predict."""

    def preprocessing(self, name: str) -> Preprocessing:
        """Normalisation and input size of the family's weights."""

    def default_layer(self, name: str) -> str:
        """Dotted path of the last convolutional feature map, the CAM family's default."""

    def weights_path(self, name: str) -> Path:
        """Where the pretrained weights are, or would be, stored."""

    def load_pretrained(self, name: str, allow_download: bool) -> Pretrained:
        """The architecture with its pretrained weights; ``WeightsUnavailableError`` when they cannot be had."""

    def description(self, name: str) -> str:
        """One line for the model picker."""
