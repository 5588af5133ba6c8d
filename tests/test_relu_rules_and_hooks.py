"""ReLU backward rules checked by hand, and the thread-safety/cleanup of module hooks."""
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xai_core.errors import ParameterError
from xai_core.instrument.capture import capture, hook_count
from xai_core.methods import explain
from xai_core.instrument.relu_rules import relu_backward_rule
from xai_core.model_handle import LoadedModel


class TwoLayer(nn.Module):
    """y = w2 · relu(W1 x) on a 2×1×1 "image", the ReLU called in one of five ways."""

    def __init__(self, relu_kind: str):
        super().__init__()
        self.fc1 = nn.Linear(2, 3, bias=False)
        self.fc2 = nn.Linear(3, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.relu_kind = relu_kind
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 2.0], [2.0, 1.0]]))
            self.fc2.weight.copy_(torch.tensor([[1.0, -2.0, 3.0]]))

    def forward(self, x):
        h = self.fc1(x.flatten(1))
        if self.relu_kind == "module_inplace":
            h = self.relu(h)
        elif self.relu_kind == "functional":
            h = F.relu(h)
        elif self.relu_kind == "functional_inplace":
            h = F.relu(h, inplace=True)
        elif self.relu_kind == "torch":
            h = torch.relu(h)
        elif self.relu_kind == "tensor_inplace":
            h.relu_()
        return self.fc2(h)


def handle(module: nn.Module, side: int = 1) -> LoadedModel:
    return LoadedModel.from_module(module, input_size=side, categories=["only"], mean=(0.0,) * 3, std=(1.0,) * 3,
                                   default_layer="")


RELU_KINDS = ["module_inplace", "functional", "functional_inplace", "torch", "tensor_inplace"]


@pytest.mark.parametrize("relu_kind", RELU_KINDS)
def test_rules_by_hand(relu_kind):
    # x = (1, 2): pre-activations W1 x = (-1, 3, 4); w2 = (1, -2, 3).
    #   plain gradient: W1ᵀ (w2 · [h > 0])            = W1ᵀ (0, -2, 3) = (8, -1)
    #   guided:         W1ᵀ (w2 · [h > 0] · [w2 > 0]) = W1ᵀ (0, 0, 3)  = (6, 3)
    #   deconvnet:      W1ᵀ max(w2, 0)                = W1ᵀ (1, 0, 3)  = (7, 2)
    model = handle(TwoLayer(relu_kind))
    x = torch.tensor([1.0, 2.0]).view(2, 1, 1)
    expected = {"gradient": [8.0, -1.0], "guided_backprop": [6.0, 3.0], "deconvnet": [7.0, 2.0]}
    for method, values in expected.items():
        [result] = explain(model, x, method, 0)
        assert result.attribution.ravel().tolist() == values, method
    # The rule is gone after the block: the plain gradient again.
    [again] = explain(model, x, "gradient", 0)
    assert again.attribution.ravel().tolist() == expected["gradient"]


def test_rule_applies_only_to_the_thread_that_set_it():
    x = torch.tensor([-1.0, 2.0, 3.0, -4.0], requires_grad=True)
    upstream = torch.tensor([1.0, -1.0, -2.0, 5.0])
    seen = {}
    started, finished = threading.Event(), threading.Event()

    def other_thread():
        started.wait()
        (seen["grad"],) = torch.autograd.grad(torch.relu(x * 1), x, upstream)
        finished.set()

    worker = threading.Thread(target=other_thread)
    with relu_backward_rule("deconvnet") as mode:
        worker.start()
        started.set()
        finished.wait()
        (mine,) = torch.autograd.grad(torch.relu(x * 1), x, upstream)
    worker.join()
    assert seen["grad"].tolist() == [0.0, -1.0, -2.0, 0.0]   # ordinary ReLU gradient
    assert mine.tolist() == [1.0, 0.0, 0.0, 5.0]             # deconvnet: max(upstream, 0)
    assert mode.relu_calls == 1


def test_unknown_rule_is_a_parameter_error():
    with pytest.raises(ParameterError, match="Unknown ReLU rule"):
        with relu_backward_rule("lrp"):
            pass


def test_capture_ignores_other_threads_and_removes_its_hook():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    mine, theirs = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    with capture(net, "1") as seen:
        net(mine)
        worker = threading.Thread(target=lambda: net(theirs))
        worker.start()
        worker.join()
        assert seen.calls == 1
        torch.testing.assert_close(seen.activation(), net[:2](mine))
    assert hook_count(net) == 0
    with pytest.raises(RuntimeError, match="boom"), capture(net, "0"):
        raise RuntimeError("boom")
    assert hook_count(net) == 0


