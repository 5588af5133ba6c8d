"""The VGG-style embedded model: conv blocks with max-pooling, then a fully connected head.

Like VGG and AlexNet, its logits come from dense layers over the flattened last feature
map, not from a global average: CAM is not defined for it (``methods/cam.py`` checks this
numerically and says so), while Grad-CAM and its relatives apply to ``DEFAULT_LAYER``.
Trained on the procedural dataset by ``scripts/train_embedded.py --arch embedded_vgg``.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from . import dataset
from .embedded import conv_block

DEFAULT_LAYER = "features.block4"  # last conv block, before its pooling: 8×8 maps, one cell per 8×8 pixels
_POOLED_SIDE = dataset.IMAGE_SIZE // 16  # four 2×2 max-pools


class EmbeddedVGG(nn.Module):
    """64×64 RGB -> ``num_classes`` logits: four conv+BN+ReLU blocks, each followed by a 2×2 max-pool,
    then flatten -> Linear -> ReLU -> dropout -> Linear.

    The first block runs at full resolution so the ~5 px dot/cross marker of the part pair is seen
    before any pooling.
    """

    def __init__(self, num_classes: int = len(dataset.CLASSES), width: int = 16, hidden: int = 128):
        super().__init__()
        channels = (width, 2 * width, 4 * width, 4 * width)
        self.features = nn.Sequential()
        cin = 3
        for index, cout in enumerate(channels, start=1):
            self.features.add_module(f"block{index}", conv_block(cin, cout))
            self.features.add_module(f"pool{index}", nn.MaxPool2d(2))
            cin = cout
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin * _POOLED_SIDE ** 2, hidden), nn.ReLU(),
                                        nn.Dropout(0.3), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def hyperparameters(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """``width`` and ``hidden`` of the state dict of an ``EmbeddedVGG`` (only those its keys show)."""
    read = {"width": "features.block1.0.weight", "hidden": "classifier.1.weight"}
    return {arg: state[key].shape[0] for arg, key in read.items() if key in state and state[key].ndim >= 2}
