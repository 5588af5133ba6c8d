"""Integrated Gradients: exactness on linear models, completeness on smooth ones, Captum parity."""
import numpy as np
import pytest
import torch
from torch import nn

from xai_core.engine import Engine
from xai_core.errors import ParameterError
from xai_core.methods import explain
from xai_core.methods.integrated_gradients import RULES, integrated_gradients, path_integral, quadrature
from xai_core.model_handle import LoadedModel


def handle(module: nn.Module, classes: int, side: int) -> LoadedModel:
    return LoadedModel.from_module(module, input_size=side, categories=[f"c{i}" for i in range(classes)],
                                   mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))


def smooth_net() -> nn.Module:
    """A small conv net with smooth activations: the path integral has no kinks."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 8, 3, padding=1), nn.Softplus(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 5))


@pytest.fixture
def linear():
    torch.manual_seed(1)
    weight = torch.randn(4, 3 * 8 * 8)
    module = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    with torch.no_grad():
        module[1].weight.copy_(weight)
    return handle(module, 4, 8), weight.view(4, 3, 8, 8)


@pytest.mark.parametrize("rule", ["riemann_left", "riemann_trapezoid", "gausslegendre"])
@pytest.mark.parametrize("baseline", ["black", "grey", "white", "constant", "image_mean"])
def test_ig_of_a_linear_model_is_weight_times_difference(linear, rule, baseline):
    model, w = linear
    x = torch.randn(3, 8, 8)
    reference = {"black": model.normalized_constant(0.0), "grey": torch.zeros(3, 1, 1),
                 "white": model.normalized_constant(1.0), "constant": model.normalized_constant(0.25),
                 "image_mean": x.mean(dim=(1, 2), keepdim=True)}[baseline]
    results = explain(model, x, "ig", [0, 3], {"steps": 3, "rule": rule, "baseline": baseline, "constant": 0.25})
    for res, c in zip(results, [0, 3]):
        expected = w[c] * (x - reference)
        np.testing.assert_allclose(res.attribution, expected.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(res.map, expected.sum(0).numpy(), rtol=1e-4, atol=1e-5)
        assert res.extras["completeness_gap"] < 1e-4


@pytest.mark.parametrize("baseline", ["black", "blur", "noise"])
def test_completeness_on_a_smooth_model(baseline):
    model = handle(smooth_net(), 5, 12)
    x = torch.randn(3, 12, 12) * 2
    results = explain(model, x, "ig", [1, 4], {"steps": 48, "baseline": baseline, "noise_draws": 3})
    for res in results:
        difference = res.extras["f_input"] - res.extras["f_baseline"]
        assert abs(difference) > 1e-3  # the check below must not be trivially true
        assert res.extras["completeness_gap"] < 1e-5 * max(1.0, abs(difference))
        assert res.attribution.sum() == pytest.approx(difference, abs=1e-5)


def test_several_targets_equal_one_target_at_a_time():
    model = handle(smooth_net(), 5, 12)
    x = torch.randn(3, 12, 12)
    together = explain(model, x, "ig", [0, 2, 3], {"steps": 8})
    for res in together:
        [alone] = explain(model, x, "ig", res.target, {"steps": 8})
        np.testing.assert_allclose(res.attribution, alone.attribution, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rule", RULES)
def test_parity_with_captum(rule):
    from captum.attr import IntegratedGradients

    net = smooth_net().eval()
    x = torch.randn(3, 12, 12)
    baseline = torch.rand(1, 3, 12, 12)
    steps = 16
    ours = integrated_gradients(net, x, baseline, [1, 3], steps=steps, rule=rule, engine=Engine("cpu", batch_size=5))
    # Captum weights the trapezoid's n nodes (spaced 1/(n−1)) by 1/n; ours by 1/(n−1).
    factor = steps / (steps - 1) if rule == "riemann_trapezoid" else 1.0
    for i, target in enumerate([1, 3]):
        theirs = IntegratedGradients(net).attribute(x[None], baseline, target=target, n_steps=steps, method=rule)[0]
        scale = float(theirs.abs().max())
        np.testing.assert_allclose(ours.attributions[i].numpy(), factor * theirs.detach().numpy(),
                                   rtol=1e-4, atol=1e-6 * scale)


def test_quadrature_rules_integrate_polynomials():
    for rule in RULES:
        positions, weights = quadrature(rule, 10)
        assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)          # constants exactly
        assert ((positions >= 0) & (positions <= 1)).all()
    for rule in ("riemann_middle", "riemann_trapezoid"):                      # linear functions exactly
        positions, weights = quadrature(rule, 10)
        assert float((weights * positions).sum()) == pytest.approx(0.5, abs=1e-7)  # float32 nodes
    # Gauss–Legendre with n points is exact for polynomials of degree 2n − 1.
    positions, weights = quadrature("gausslegendre", 4)
    assert float((weights * positions ** 7).sum()) == pytest.approx(1 / 8, abs=1e-12)


def test_reductions_and_bad_parameters(linear):
    model, _ = linear
    x = torch.randn(3, 8, 8)
    [plain] = explain(model, x, "ig", 1, {"steps": 4})
    [absolute] = explain(model, x, "ig", 1, {"steps": 4, "reduce": "abs_sum"})
    [positive] = explain(model, x, "ig", 1, {"steps": 4, "reduce": "positive"})
    np.testing.assert_allclose(absolute.map, np.abs(plain.map), rtol=1e-6)
    np.testing.assert_allclose(positive.map, np.clip(plain.map, 0, None), rtol=1e-6)
    with pytest.raises(ParameterError):
        explain(model, x, "ig", 1, {"rule": "simpson"})
    with pytest.raises(ParameterError):
        explain(model, x, "ig", 1, {"steps": 1})


def test_batched_path_integral_equals_one_image_at_a_time():
    net = smooth_net()
    xs, baselines = torch.randn(3, 3, 12, 12), torch.rand(3, 2, 3, 12, 12)
    engine = Engine("cpu", batch_size=7)  # batches straddle images and baselines
    batched = path_integral(net, xs, baselines, [0, 4], steps=6, rule="gausslegendre", engine=engine)
    for b in range(3):
        alone = integrated_gradients(net, xs[b], baselines[b], [0, 4], steps=6, rule="gausslegendre", engine=engine)
        torch.testing.assert_close(batched.attributions[:, b], alone.attributions, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(batched.f_baseline[:, b], alone.f_baseline)
        torch.testing.assert_close(batched.completeness_gap[:, b], alone.completeness_gap, rtol=1e-3, atol=1e-6)
