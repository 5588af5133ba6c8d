"""K targets in one vmapped backward pass (``instrument.gradients``) equal K single backward passes.

For every registered method that differentiates through ``target_gradients``: ``explain`` with
three targets on the batched path against three one-target calls on the loop path, on a random
ResNet-18 (ReLU rules included: Guided Backprop, DeconvNet, Guided Grad-CAM). A spy checks that
the batched path really ran (a silent fallback to the loop would make the comparison vacuous).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xai_core.instrument import gradients
from xai_core.methods import explain

TARGETS = [3, 1, 7]
GRADIENT_METHODS = {
    "saliency": {}, "gradient": {}, "grad_x_input": {}, "guided_backprop": {}, "deconvnet": {},
    "gradcam": {}, "gradcampp": {}, "guided_gradcam": {}, "xgradcam": {}, "hirescam": {}, "layercam": {},
    "ig": {"steps": 4}, "smoothgrad": {"samples": 3, "base": "guided_backprop"},
}


@pytest.fixture
def batched_calls(monkeypatch) -> list[int]:
    """Force the batched path on the CPU; the list grows by one per successful batched pass."""
    calls: list[int] = []
    real = gradients._batched_gradients

    def spy(picked, wrt):
        result = real(picked, wrt)
        calls.append(picked.shape[1])
        return result

    monkeypatch.setattr(gradients, "_batched_gradients", spy)
    monkeypatch.setitem(gradients.BATCHED_BACKWARD, "cpu", True)
    return calls


@pytest.fixture(scope="module")
def image40() -> torch.Tensor:
    return torch.randn(3, 40, 40, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", list(GRADIENT_METHODS))
def test_three_targets_in_one_backward_equal_three_single_backwards(name, resnet_random, image40, monkeypatch,
                                                                    batched_calls):
    params = GRADIENT_METHODS[name]
    together = explain(resnet_random, image40, name, TARGETS, params)
    assert batched_calls and all(k == len(TARGETS) for k in batched_calls)
    monkeypatch.setitem(gradients.BATCHED_BACKWARD, "cpu", False)
    for target, batched in zip(TARGETS, together):
        (single,) = explain(resnet_random, image40, name, [target], params)
        scale = np.abs(single.map).max()
        assert scale > 0
        np.testing.assert_allclose(batched.map, single.map, rtol=0, atol=1e-6 * max(1.0, scale))
        if single.attribution is not None:
            np.testing.assert_allclose(batched.attribution, single.attribution, rtol=0,
                                       atol=1e-6 * max(1.0, np.abs(single.attribution).max()))


def test_per_image_targets_batched_equal_the_loop(resnet_random):
    """A B×T target tensor (each image its own classes, as IG's batched path uses) on both paths."""
    xs = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4), requires_grad=True)
    rows = torch.tensor([[0, 5], [9, 2]])
    scores = resnet_random.module(xs)
    loop = gradients.target_gradients(scores, rows, xs, batched=False)
    scores = resnet_random.module(xs)
    batched = gradients.target_gradients(scores, rows, xs, batched=True)
    assert batched.shape == (2, 2, 3, 32, 32)
    torch.testing.assert_close(batched, loop, rtol=0, atol=1e-6)


class _ItemInBackward(torch.autograd.Function):
    """Identity whose backward reads a host value: vmap cannot batch it (``.item()`` on a batched tensor)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * (1.0 if grad.sum().item() >= 0 else 1.0)


def test_a_graph_without_batching_rules_falls_back_to_the_loop():
    weight = torch.randn(4, 6, generator=torch.Generator().manual_seed(5))
    x = torch.randn(3, 6, requires_grad=True)
    scores = _ItemInBackward.apply(x) @ weight.T
    with pytest.raises(RuntimeError):
        gradients._batched_gradients(gradients.pick_scores(scores, [0, 2]), x)
    scores = _ItemInBackward.apply(x) @ weight.T
    grads = gradients.target_gradients(scores, [0, 2, 3], x, batched=True)
    expected = weight[[0, 2, 3]].unsqueeze(1).expand(3, 3, 6)  # linear scores: ∂s_t/∂x = W_t for every row
    torch.testing.assert_close(grads, expected)
