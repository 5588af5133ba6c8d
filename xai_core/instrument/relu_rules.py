"""Modified ReLU backward rules: Guided Backprop and DeconvNet.

``relu_backward_rule(rule)`` reroutes every ReLU of forward passes run *by the
current thread* inside the ``with`` block to a custom autograd function whose backward is:

- ``"guided"`` (Springenberg et al. 2015): ``grad_in = grad_out · [x > 0] · [grad_out > 0]``
- ``"deconvnet"`` (Zeiler & Fergus 2014): ``grad_in = max(grad_out, 0)`` — the forward mask
  is ignored, only positive incoming signals pass (the "rectified unpooling" path).

Why a ``TorchFunctionMode`` and not module hooks: models call ReLU in three ways —
``nn.ReLU`` (often ``inplace=True``, as in torchvision's ResNet/VGG/AlexNet), ``F.relu`` and
``torch.relu``/``Tensor.relu`` inside ``forward``. All of them go through
``torch.nn.functional.relu`` or the ``torch.relu[_]`` functions, which a torch-function mode
intercepts. The mode stack is thread-local, so another thread using the same shared model at
the same time keeps ordinary ReLUs, and nothing is written on the model (no hooks, no
swapped modules). The rule is fixed into the graph at forward time; the backward pass can
run anywhere. Max-pooling, convolutions and normalisation keep their usual gradients.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import ParameterError

RULES = ("guided", "deconvnet")

_OUT_OF_PLACE = {F.relu, torch.relu, torch.Tensor.relu}
_IN_PLACE = {torch.relu_, F.relu_, torch.Tensor.relu_}


class _RuleReLU(torch.autograd.Function):
    """ReLU forward; backward by ``rule``. In-place when the caller asked for it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rule: str, inplace: bool) -> torch.Tensor:
        if inplace:
            ctx.mark_dirty(x)
            out = x.clamp_(min=0)
        else:
            out = x.clamp(min=0)
        ctx.rule = rule
        if rule == "guided":
            ctx.save_for_backward(out)  # out > 0 exactly where x > 0
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_in = grad_out.clamp(min=0)
        if ctx.rule == "guided":
            (out,) = ctx.saved_tensors
            grad_in = grad_in * (out > 0)
        return grad_in, None, None


class _ReLURuleMode(TorchFunctionMode):
    def __init__(self, rule: str):
        super().__init__()
        self.rule = rule
        self.relu_calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _OUT_OF_PLACE or func in _IN_PLACE:
            x = args[0]
            inplace = func in _IN_PLACE or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
            if isinstance(x, torch.Tensor) and torch.is_grad_enabled() and x.requires_grad:
                self.relu_calls += 1
                return _RuleReLU.apply(x, self.rule, inplace)
        return func(*args, **kwargs)


@contextlib.contextmanager
def relu_backward_rule(rule: str) -> Iterator[_ReLURuleMode]:
    """Within the block, every ReLU the current thread runs back-propagates with ``rule``.

    The yielded object's ``relu_calls`` counts the ReLUs rerouted (0 means the model has no
    ReLU, e.g. GELU/SiLU networks, and the result is the plain gradient).
    """
    if rule not in RULES:
        raise ParameterError(f"Unknown ReLU rule '{rule}'; expected one of {', '.join(RULES)}.")
    mode = _ReLURuleMode(rule)
    with mode:
        yield mode
