"""Vanilla gradient family (Simonyan et al. 2014): saliency, signed gradient, gradient × input."""
from __future__ import annotations

import torch

from .base import Method, MethodOutput


def input_gradients(model, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """∂y_t/∂x for each target t from one forward pass: T×C×H×W (fp32, on the device).

    Uses ``torch.autograd.grad`` so the shared model's parameters get no ``.grad``.
    """
    xs = x.detach().unsqueeze(0).expand(len(targets), *x.shape).clone().requires_grad_(True)
    logits = model.module(xs).float()
    picked = logits[torch.arange(len(targets), device=logits.device), torch.as_tensor(targets, device=logits.device)]
    (grad,) = torch.autograd.grad(picked.sum(), xs)
    return grad


def _saliency(model, x, targets, *, engine, progress=None):
    grad = input_gradients(model, x, targets)
    return MethodOutput(maps=grad.abs().amax(dim=1), attributions=grad)


def _gradient(model, x, targets, *, engine, progress=None):
    grad = input_gradients(model, x, targets)
    return MethodOutput(maps=grad.sum(dim=1), attributions=grad)


def _grad_x_input(model, x, targets, *, engine, progress=None):
    attribution = input_gradients(model, x, targets) * x.unsqueeze(0)
    return MethodOutput(maps=attribution.sum(dim=1), attributions=attribution)


SALIENCY = Method("saliency", "Saliency |∂y/∂x|", "gradient", _saliency,
                  description="Absolute input gradient, max over colour channels (Simonyan et al. 2014).")
GRADIENT = Method("gradient", "Signed gradient", "gradient", _gradient,
                  description="Input gradient summed over colour channels, sign kept.")
GRAD_X_INPUT = Method("grad_x_input", "Gradient × input", "gradient", _grad_x_input,
                      description="Input gradient times the (normalised) input, summed over channels.")
