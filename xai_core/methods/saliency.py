"""Vanilla gradient family (Simonyan et al. 2014): saliency, signed gradient, gradient × input.

All three read ∂y_t/∂x from one forward pass for every target (``instrument.gradients``).
Gradient × input multiplies by the normalised input, as Captum's ``InputXGradient`` does with
the tensor it is given.
"""
from __future__ import annotations

import torch

from ..instrument.gradients import Targets, input_gradients
from .base import attribution_method, max_abs_over_channels, sum_over_channels


def gradient_attribution(model, xs: torch.Tensor, targets: Targets, *, engine) -> torch.Tensor:
    """∂y_t/∂x for every image of ``xs`` (B×C×H×W) and target: T×B×C×H×W."""
    with engine.precision("gradients"):
        return input_gradients(model.module, xs, targets)


def gradient_times_input(model, xs: torch.Tensor, targets: Targets, *, engine) -> torch.Tensor:
    """∂y_t/∂x ⊙ x: T×B×C×H×W."""
    return gradient_attribution(model, xs, targets, engine=engine) * xs.unsqueeze(0)


SALIENCY = attribution_method(
    "saliency", "Saliency |∂y/∂x|", "gradient", gradient_attribution, max_abs_over_channels,
    description="Absolute input gradient, max over colour channels (Simonyan et al. 2014).",
    reference="Captum Saliency")
GRADIENT = attribution_method(
    "gradient", "Signed gradient", "gradient", gradient_attribution, sum_over_channels,
    description="Input gradient summed over colour channels, sign kept.",
    reference="Captum Saliency(abs=False)")
GRAD_X_INPUT = attribution_method(
    "grad_x_input", "Gradient × input", "gradient", gradient_times_input, sum_over_channels,
    description="Input gradient times the (normalised) input, summed over channels.",
    reference="Captum InputXGradient")
