"""The GPU path's memory-format option: a channels-last ResNet gives every method the same maps.

``LoadedModel.to_channels_last`` only changes how the weights (and so every activation) are laid
out in memory; the maths is the same, so each registered method's fp32 maps must match those of
the same weights stored NCHW. Runs on the CPU (channels-last convolutions exist there too). The
engine's out-of-memory back-off is tested in ``tests/test_engine.py``; autocast parity in
``tests/test_precision.py`` (CUDA only).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xai_core.errors import XAIError
from xai_core.methods import METHODS, explain
from xai_core.models import build_random

FAST = {"smoothgrad": {"samples": 3}, "ig": {"steps": 4}, "rise": {"masks": 50},
        "occlusion": {"window": 8, "stride": 8}}
LAYER = "layer1"  # 64 channels: Score-CAM and Ablation-CAM stay fast
TARGETS = [3, 1]


@pytest.fixture(scope="module")
def pair():
    """The same random ResNet-18 twice: NCHW and channels-last weights."""
    return (build_random("resnet18", num_classes=10, seed=2),
            build_random("resnet18", num_classes=10, seed=2).to_channels_last())


@pytest.fixture(scope="module")
def image32() -> torch.Tensor:
    return torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(6))


def test_the_weights_really_are_channels_last(pair):
    convs = [m for m in pair[1].module.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert not pair[0].module.conv1.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", list(METHODS))
def test_channels_last_maps_equal_nchw_maps(name, pair, image32):
    params = dict(FAST.get(name, {}))
    if METHODS[name].uses_layer:
        params["layer"] = LAYER
    results = []
    for model in pair:
        try:
            results.append(explain(model, image32, name, TARGETS, params))
        except XAIError as err:  # a method that refuses a CNN (attention rollout) refuses both alike
            results.append(type(err))
    nchw, nhwc = results
    if isinstance(nchw, type):
        assert nhwc is nchw
        return
    for a, b in zip(nchw, nhwc):
        scale = max(1e-12, np.abs(a.map).max())
        np.testing.assert_allclose(b.map, a.map, rtol=0, atol=1e-4 * scale)
        assert np.corrcoef(a.map.ravel(), b.map.ravel())[0, 1] >= 0.9999 or np.ptp(a.map) == 0
