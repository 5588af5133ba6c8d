"""Vanilla gradient methods on models whose gradients are known in closed form."""
import numpy as np
import pytest
import torch

from xai_core.errors import ParameterError
from xai_core.methods import explain
from xai_core.model_handle import LoadedModel


def test_saliency_of_a_linear_model_is_abs_weight_max_over_channels(linear_model):
    model, w = linear_model
    x = torch.randn(3, 8, 8)
    results = explain(model, x, "saliency", [0, 2, "class 3"])
    for res, c in zip(results, [0, 2, 3]):
        assert res.target == c
        np.testing.assert_allclose(res.map, w[c].abs().amax(0).numpy(), rtol=1e-6)
        np.testing.assert_allclose(res.attribution, w[c].numpy(), rtol=1e-6)


def test_signed_gradient_and_gradient_times_input(linear_model):
    model, w = linear_model
    x = torch.randn(3, 8, 8)
    [grad] = explain(model, x, "gradient", 1)
    np.testing.assert_allclose(grad.map, w[1].sum(0).numpy(), rtol=1e-5, atol=1e-6)
    [gxi] = explain(model, x, "grad_x_input", 1)
    np.testing.assert_allclose(gxi.map, (w[1] * x).sum(0).numpy(), rtol=1e-5, atol=1e-6)
    # Gradient × input of a linear model sums to the logit minus its bias (completeness).
    assert gxi.map.sum() == pytest.approx(float((w[1] * x).sum()), rel=1e-5)


def test_targets_and_params_are_validated(linear_model):
    model, _ = linear_model
    x = torch.randn(3, 8, 8)
    with pytest.raises(ParameterError, match="out of range"):
        explain(model, x, "saliency", 9)
    with pytest.raises(ParameterError, match="No class"):
        explain(model, x, "saliency", "zebra")
    with pytest.raises(ParameterError, match="no parameter"):
        explain(model, x, "saliency", 0, {"samples": 3})
    with pytest.raises(ParameterError, match="Unknown method"):
        explain(model, x, "nonsense", 0)


def test_saliency_leaves_no_gradient_on_shared_parameters(linear_model):
    model, _ = linear_model
    explain(model, torch.randn(3, 8, 8), "saliency", 0)
    assert all(p.grad is None for p in model.module.parameters())


def test_any_module_can_be_wrapped_and_gets_its_last_feature_map_as_cam_layer():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3))
    model = LoadedModel.from_module(net, input_size=16, categories=["a", "b", "c"])
    assert model.default_layer == "1" and model.categories == ["a", "b", "c"]
    [cam] = explain(model, torch.randn(3, 16, 16), "gradcam", "b")
    assert cam.map.shape == (16, 16) and cam.params["layer"] == "1"
    with pytest.raises(ParameterError, match="class names"):
        LoadedModel.from_module(net, input_size=16)
