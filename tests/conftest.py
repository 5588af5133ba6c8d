"""Shared test models and images.

Session-scoped, so each is built once for the whole suite: the embedded model with its
shipped weights, the embedded and ResNet-18 architectures with random weights (no download),
a linear model whose gradients are known in closed form, and seeded input tensors.
Methods never modify a model (they must not: models are shared between sessions), so one
instance serves every test; ``tests/test_contracts.py`` checks that no hook is left behind.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xai_core import dataset
from xai_core.model_handle import LoadedModel
from xai_core.models import build_random, load_model


@pytest.fixture(scope="session")
def linear_model() -> tuple[LoadedModel, torch.Tensor]:
    """A linear classifier on 8×8 RGB inputs, logits = W · flatten(x) + b, and its weights W as 4×3×8×8:
    its input gradient is W exactly, whatever the input."""
    weight = torch.randn(4, 3 * 8 * 8, generator=torch.Generator().manual_seed(0))
    module = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    with torch.no_grad():
        module[1].weight.copy_(weight)
    return LoadedModel.from_module(module, input_size=8, num_classes=4, mean=(0.5,) * 3, std=(0.25,) * 3,
                                   name="linear"), weight.view(4, 3, 8, 8)


@pytest.fixture(scope="session")
def embedded() -> LoadedModel:
    """The shipped embedded model (trained weights), on the CPU."""
    return load_model("embedded", device="cpu")


@pytest.fixture(scope="session")
def embedded_random() -> LoadedModel:
    """The embedded architecture with random weights: conv blocks, GAP + linear head, 64 px."""
    return build_random("embedded", device="cpu")


@pytest.fixture(scope="session")
def embedded_vit_random() -> LoadedModel:
    """The embedded vision transformer with random weights: 8×8 patch tokens after a class token, 64 px.

    Redrawn at torch's usual scale (std 1/√fan-in), LayerNorm gains and shifts included: with timm's
    initialisation (std 0.02, unit gains, zero shifts) the tokens barely depend on the image, and a
    LayerNorm output has zero mean over channels, so Score-CAM's nearly equal weights sum it to ~0:
    the maps of a random ViT would be flat or zero for every target alike."""
    model = build_random("embedded_vit", device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.module.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.normal_(0, module.weight[0].numel() ** -0.5, generator=generator)
                if module.bias is not None:
                    module.bias.normal_(0, 0.1, generator=generator)
            elif isinstance(module, nn.LayerNorm):
                module.weight.normal_(1, 0.5, generator=generator)
                module.bias.normal_(0, 0.5, generator=generator)
    return model


@pytest.fixture(scope="session")
def resnet_random() -> LoadedModel:
    """torchvision's ResNet-18 with random weights and 10 classes (no download)."""
    return build_random("resnet18", num_classes=10, device="cpu")


@pytest.fixture(scope="session")
def image64() -> torch.Tensor:
    """A seeded normalised-scale random input, 3×64×64."""
    return torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def dataset_sample() -> dataset.Sample:
    """One embedded-dataset image with its ground truth (seed 7, index 3)."""
    return dataset.make_sample(7, 3)


@pytest.fixture(scope="session")
def dataset_input(embedded, dataset_sample) -> torch.Tensor:
    """``dataset_sample`` normalised for the embedded model, 3×64×64."""
    return dataset.normalize(np.asarray(dataset_sample.image)[None], embedded.mean, embedded.std)[0]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A narrow embedded network with random weights, as a state dict file for ``--checkpoint``."""
    from xai_core.embedded import EmbeddedNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(EmbeddedNet(len(dataset.CLASSES), width=4).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def sample_png(tmp_path_factory):
    """An embedded-dataset sample as a PNG file, for commands that take ``--image``."""
    path = tmp_path_factory.mktemp("img") / "sample.png"
    dataset.make_sample(seed=123, index=0).pil().save(path)
    return path
