"""torchvision's ImageNet classifiers, through torchvision's own weights API.

Each architecture uses its ``DEFAULT`` weights enum for everything the weights define: the
download URL (hence the file name in torch's hub cache), the class names, the
preprocessing and the published accuracy. torchvision is imported on first use only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .checkpoints import head_weight, with_weights
from .family import Preprocessing, Pretrained
from .weights import hub_path, hub_state_dict


@dataclass(frozen=True)
class TorchvisionSpec:
    """What torchvision's weights do not say about an architecture."""

    label: str
    default_layer: str  # the CAM family's: last convolutional feature map (after its activation), or a
    #                     transformer's last token grid that still reaches the logits (``instrument.layout``)
    # Copies of the DEFAULT weights' meta, so that listing the models (the sidebar's picker, on every cold
    # start) needs no torchvision import; tests/test_models.py checks them against torchvision.
    weights_file: str   # the file name in torch's hub cache
    num_params: int
    top1: float         # published ImageNet-1K acc@1


TORCHVISION: dict[str, TorchvisionSpec] = {
    "alexnet": TorchvisionSpec("AlexNet (2012), 5 conv + 3 dense layers", "features.11",
        weights_file="alexnet-owt-7be5be79.pth", num_params=61100840, top1=56.522),
    "vgg16": TorchvisionSpec("VGG-16 (2014), 13 conv + 3 dense layers", "features.29",
        weights_file="vgg16-397923af.pth", num_params=138357544, top1=71.592),
    "resnet18": TorchvisionSpec("ResNet-18 (2015), residual basic blocks", "layer4",
        weights_file="resnet18-f37072fd.pth", num_params=11689512, top1=69.758),
    "resnet50": TorchvisionSpec("ResNet-50 (2015), residual bottleneck blocks", "layer4",
        weights_file="resnet50-11ad3fa6.pth", num_params=25557032, top1=80.858),
    "densenet121": TorchvisionSpec("DenseNet-121 (2016), densely connected blocks", "features",
        weights_file="densenet121-a639ec97.pth", num_params=7978856, top1=74.434),
    "mobilenet_v3_large": TorchvisionSpec("MobileNet-V3 Large (2019), mobile inverted residuals",
                                          "features.16", weights_file="mobilenet_v3_large-5c1a4163.pth", num_params=5483032, top1=75.274),
    "efficientnet_b0": TorchvisionSpec("EfficientNet-B0 (2019), compound-scaled MBConv", "features.8",
        weights_file="efficientnet_b0_rwightman-7f5810bc.pth", num_params=5288548, top1=77.692),
    "convnext_tiny": TorchvisionSpec("ConvNeXt-Tiny (2022), modernised ResNet", "features.7",
        weights_file="convnext_tiny-983f1562.pth", num_params=28589128, top1=82.52),
    # The head reads the class token after the final norm, so the last place where the patch tokens
    # reach it is the last block's attention: its input norm (pytorch-grad-cam's ViT example).
    "vit_b_16": TorchvisionSpec("ViT-B/16 (2020), vision transformer on 16 px patches with a class token",
                                "encoder.layers.encoder_layer_11.ln_1",
        weights_file="vit_b_16-c867db91.pth", num_params=86567656, top1=81.072),
    # The last stage's output, N×7×7×768 channels last.
    "swin_t": TorchvisionSpec("Swin-T (2021), shifted-window transformer in four stages", "features.7",
        weights_file="swin_t-704ceda3.pth", num_params=28288354, top1=81.474),
}


def _weights(name: str) -> Any:
    """The architecture's ``DEFAULT`` torchvision weights enum member."""
    from torchvision.models import get_model_weights

    return get_model_weights(name).DEFAULT


class TorchvisionFamily:
    """The ``TORCHVISION`` architectures, with their ImageNet weights from torch's hub cache."""

    names = tuple(TORCHVISION)
    prefix = ""

    def build(self, name: str, num_classes: int | None = None, **arch: int) -> nn.Module:
        """``torchvision.models.get_model`` without weights."""
        from torchvision.models import get_model

        return get_model(name, weights=None, num_classes=num_classes or len(self.categories(name)), **arch)

    def architecture(self, name: str, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """The number of classes, read from the head's weight (empty when there is no head)."""
        head = head_weight(self, name, state)
        return {} if head is None else {"num_classes": head.shape[0]}

    def categories(self, name: str) -> list[str]:
        """The ImageNet class names of the weights."""
        return list(_weights(name).meta["categories"])

    def preprocessing(self, name: str) -> Preprocessing:
        """The weights' own transforms: resize, centre crop, ImageNet mean and std."""
        transforms = _weights(name).transforms()
        return Preprocessing(mean=tuple(transforms.mean), std=tuple(transforms.std),
                             input_size=int(transforms.crop_size[0]), resize_size=int(transforms.resize_size[0]),
                             interpolation=transforms.interpolation.value)

    def default_layer(self, name: str) -> str:
        """The CAM family's layer, from ``TORCHVISION``."""
        return TORCHVISION[name].default_layer

    def weights_path(self, name: str) -> Path:
        """The file in torch's hub cache that torchvision would download (``TORCHVISION``'s copy of the
        weights' URL file name; ``tests/test_models.py`` checks it against torchvision)."""
        return hub_path(TORCHVISION[name].weights_file)

    def load_pretrained(self, name: str, allow_download: bool) -> Pretrained:
        """ImageNet weights from the hub cache, downloaded first when allowed and reachable."""
        weights = _weights(name)
        state = hub_state_dict(name, weights.url, allow_download)
        module = with_weights(self, name, state, self.weights_path(name).name)
        return Pretrained(module, self.categories(name), f"torchvision {weights}")

    def description(self, name: str) -> str:
        """Label, parameter count and published ImageNet top-1 accuracy (from ``TORCHVISION``)."""
        spec = TORCHVISION[name]
        return f"{spec.label}; {spec.num_params / 1e6:.1f} M parameters, ImageNet top-1 {spec.top1:.1f}%"


FAMILY = TorchvisionFamily()
