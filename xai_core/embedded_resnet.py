"""The ResNet-style embedded model: residual basic blocks with batch norm, GAP and one linear layer.

He et al. 2016's basic block (two 3×3 conv + BN, identity or 1×1 projection shortcut) in
three stages after a strided stem, ending like torchvision's ResNet-18: global average
pooling and one linear layer, so CAM applies to ``DEFAULT_LAYER``. Each block has its own
two ReLU modules (torchvision reuses one), so module hooks fire once per activation.
Trained on the procedural dataset by ``scripts/train_embedded.py --arch embedded_resnet``.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from . import dataset

DEFAULT_LAYER = "layer3"  # last stage: 8×8 maps, one cell per 8×8 pixels


def _conv_bn(cin: int, cout: int, kernel: int, stride: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the shortcut projects when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, cout, 3, stride)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = _conv_bn(cout, cout, 3, 1)
        self.relu2 = nn.ReLU()
        self.downsample = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + shortcut)


class EmbeddedResNet(nn.Module):
    """64×64 RGB -> ``num_classes`` logits: 5×5 stride-2 stem (32×32), stages of ``width``, 2×, 4×
    channels at 32, 16 and 8 px, global average pooling, linear head."""

    def __init__(self, num_classes: int = len(dataset.CLASSES), width: int = 16):
        super().__init__()
        conv, bn = _conv_bn(3, width, 5, 2)
        self.stem = nn.Sequential(conv, bn, nn.ReLU())
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.layer3 = BasicBlock(2 * width, 4 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(features), 1))


def hyperparameters(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The ``width`` of the state dict of an ``EmbeddedResNet`` (empty when its stem is absent)."""
    stem = state.get("stem.0.weight")
    return {"width": stem.shape[0]} if stem is not None and stem.ndim == 4 else {}
