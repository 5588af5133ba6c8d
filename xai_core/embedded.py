"""The embedded model: a compact CNN trained on the procedural dataset (``dataset.py``).

Its head is conv features -> global average pooling -> one linear layer, the architecture
CAM was defined for, so CAM, Grad-CAM and their relatives all apply and agree in spirit.
The checkpoint ships inside the package (``xai_core/assets/embedded.pt``, written by
``scripts/train_embedded.py``), so the app opens on a model without any download, wherever
the package is installed.

The checkpoint format (``save_embedded``/``read_embedded``) is shared by the whole embedded
family (``embedded_vgg.py``, ``embedded_resnet.py``, ``embedded_vit.py``): a state dict with
the dataset's classes and image size, so a file trained on another dataset version is refused.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from . import dataset
from .errors import CheckpointError

CHECKPOINT = Path(__file__).resolve().parent / "assets" / "embedded.pt"  # package data
DEFAULT_LAYER = "features.block4"  # last conv block: 16×16 maps, one cell per 4×4 pixels
_HEAD_CHANNELS_PER_WIDTH = 4       # block4, and so the linear head, has 4 × width channels


def conv_block(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """Conv (same padding, no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, dilation * (kernel // 2), dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class EmbeddedNet(nn.Module):
    """64×64 RGB -> ``num_classes`` logits; ``features`` ends on a 16×16 map for CAM.

    The strided 5×5 stem sees every pixel (the dot/cross marker is only ~5 px wide) while
    halving the cost of the layers after it. The last two blocks are dilated: each unit
    sees 43 px, enough to relate a shape's corners and edges without pooling below 16×16.
    """

    def __init__(self, num_classes: int = len(dataset.CLASSES), width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential()
        self.features.add_module("block1", conv_block(3, w, kernel=5, stride=2))   # 32×32
        self.features.add_module("block2", conv_block(w, 3 * w // 2))
        self.features.add_module("pool", nn.MaxPool2d(2))                           # 16×16
        self.features.add_module("block3", conv_block(3 * w // 2, 3 * w, dilation=2))
        self.features.add_module("block4", conv_block(3 * w, _HEAD_CHANNELS_PER_WIDTH * w, dilation=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(_HEAD_CHANNELS_PER_WIDTH * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def width_from_head(head_features: int) -> int:
    """The ``width`` argument of an ``EmbeddedNet`` whose linear head has ``head_features`` inputs."""
    return head_features // _HEAD_CHANNELS_PER_WIDTH


def save_embedded(model: nn.Module, path: Path = CHECKPOINT) -> int:
    """Write the checkpoint of any embedded-family model (state dict + the dataset facts); returns its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "classes": list(dataset.CLASSES),
                "image_size": dataset.IMAGE_SIZE}, path)
    return path.stat().st_size


def read_embedded(path: Path = CHECKPOINT) -> dict[str, torch.Tensor]:
    """The state dict of an embedded-family checkpoint; ``CheckpointError`` if it is missing or of another dataset."""
    if not Path(path).exists():
        raise CheckpointError(f"The embedded model checkpoint {path} is missing; run scripts/train_embedded.py.")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("classes") != list(dataset.CLASSES) or saved.get("image_size") != dataset.IMAGE_SIZE:
        raise CheckpointError(f"The checkpoint {path} was trained on another version of the embedded dataset.")
    return saved["state_dict"]


def load_embedded(device: torch.device | str = "cpu", path: Path = CHECKPOINT) -> EmbeddedNet:
    """The trained model in eval mode on ``device``."""
    state = read_embedded(path)
    model = EmbeddedNet(len(dataset.CLASSES), **hyperparameters(state))
    model.load_state_dict(state)
    return model.to(device).eval()


def hyperparameters(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The ``width`` an ``EmbeddedNet`` state dict was saved with (empty when its head is absent)."""
    head = state.get("fc.weight")
    return {"width": width_from_head(head.shape[1])} if head is not None and head.ndim == 2 else {}
