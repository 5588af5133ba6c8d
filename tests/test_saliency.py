"""Vanilla gradient methods on models whose gradients are known in closed form."""
import numpy as np
import pytest
import torch
from torch import nn

from xai_core.errors import ParameterError
from xai_core.methods import explain
from xai_core.model_handle import LoadedModel


def linear_handle(weight: torch.Tensor) -> LoadedModel:
    """A linear classifier on 3×H×W inputs: y = W · flatten(x)."""
    classes, features = weight.shape
    side = int(round((features / 3) ** 0.5))
    module = nn.Sequential(nn.Flatten(), nn.Linear(features, classes, bias=True)).eval()
    with torch.no_grad():
        module[1].weight.copy_(weight)
    return LoadedModel(name="linear", arch="linear", module=module,
                       categories=[f"class {i}" for i in range(classes)], mean=(0.5,) * 3, std=(0.25,) * 3,
                       input_size=side, resize_size=side, weights_source="test", default_layer="",
                       device=torch.device("cpu"))


@pytest.fixture
def linear():
    torch.manual_seed(0)
    weight = torch.randn(4, 3 * 8 * 8)
    return linear_handle(weight), weight.view(4, 3, 8, 8)


def test_saliency_of_a_linear_model_is_abs_weight_max_over_channels(linear):
    model, w = linear
    x = torch.randn(3, 8, 8)
    results = explain(model, x, "saliency", [0, 2, "class 3"])
    for res, c in zip(results, [0, 2, 3]):
        assert res.target == c
        np.testing.assert_allclose(res.map, w[c].abs().amax(0).numpy(), rtol=1e-6)
        np.testing.assert_allclose(res.attribution, w[c].numpy(), rtol=1e-6)


def test_signed_gradient_and_gradient_times_input(linear):
    model, w = linear
    x = torch.randn(3, 8, 8)
    [grad] = explain(model, x, "gradient", 1)
    np.testing.assert_allclose(grad.map, w[1].sum(0).numpy(), rtol=1e-5, atol=1e-6)
    [gxi] = explain(model, x, "grad_x_input", 1)
    np.testing.assert_allclose(gxi.map, (w[1] * x).sum(0).numpy(), rtol=1e-5, atol=1e-6)
    # For a linear model without bias, gradient × input sums to the logit (completeness).
    assert gxi.map.sum() == pytest.approx(float((w[1] * x).sum()), rel=1e-5)


def test_targets_and_params_are_validated(linear):
    model, _ = linear
    x = torch.randn(3, 8, 8)
    with pytest.raises(ParameterError, match="out of range"):
        explain(model, x, "saliency", 9)
    with pytest.raises(ParameterError, match="No class"):
        explain(model, x, "saliency", "zebra")
    with pytest.raises(ParameterError, match="no parameter"):
        explain(model, x, "saliency", 0, {"samples": 3})
    with pytest.raises(ParameterError, match="Unknown method"):
        explain(model, x, "nonsense", 0)


def test_saliency_leaves_no_gradient_on_shared_parameters(linear):
    model, _ = linear
    explain(model, torch.randn(3, 8, 8), "saliency", 0)
    assert all(p.grad is None for p in model.module.parameters())
