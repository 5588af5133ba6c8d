"""Guided Backprop (Springenberg et al. 2015) and DeconvNet (Zeiler & Fergus 2014).

Both are the input gradient with the ReLU backward rule replaced (``instrument.relu_rules``):
one forward pass under the rule, then one backward pass per target through the retained graph
(``instrument.gradients``). Matches Captum's ``GuidedBackprop`` and ``Deconvolution`` (which
hook ``nn.ReLU`` modules and so miss functional ReLUs; ours also covers ``F.relu``/``torch.relu``
and in-place ReLUs). The map is the absolute value, max over colour channels (as for saliency);
the signed C×H×W result is the attribution.
"""
from __future__ import annotations

import torch

from ..errors import ParameterError
from ..instrument.gradients import Targets, input_gradients
from ..instrument.relu_rules import relu_backward_rule
from .base import attribution_method, max_abs_over_channels


def rule_gradients(model, xs: torch.Tensor, targets: Targets, rule: str, *, engine) -> tuple[torch.Tensor, int]:
    """∂y_t/∂x under the ReLU ``rule`` for each target and image of ``xs`` (B×C×H×W):
    (T×B×C×H×W fp32, number of ReLUs rerouted)."""
    with engine.precision("gradients"), relu_backward_rule(rule) as mode:
        grads = input_gradients(model.module, xs, targets)
    if mode.relu_calls == 0:  # a GELU/SiLU network: the rule would silently be the plain gradient
        raise ParameterError(f"{model.name} has no ReLU; Guided Backprop and DeconvNet are defined by their "
                             "ReLU backward rule (use the plain gradient or SmoothGrad).")
    return grads, mode.relu_calls


def guided_attribution(model, xs: torch.Tensor, targets: Targets, *, engine) -> torch.Tensor:
    """Guided Backprop attribution, T×B×C×H×W."""
    return rule_gradients(model, xs, targets, "guided", engine=engine)[0]


def deconvnet_attribution(model, xs: torch.Tensor, targets: Targets, *, engine) -> torch.Tensor:
    """DeconvNet attribution, T×B×C×H×W."""
    return rule_gradients(model, xs, targets, "deconvnet", engine=engine)[0]


GUIDED_BACKPROP = attribution_method(
    "guided_backprop", "Guided Backprop", "gradient", guided_attribution, max_abs_over_channels,
    description="Gradient where each ReLU passes only positive gradients at positive inputs "
                "(Springenberg et al. 2015).",
    reference="Captum GuidedBackprop")
DECONVNET = attribution_method(
    "deconvnet", "DeconvNet", "gradient", deconvnet_attribution, max_abs_over_channels,
    description="Zeiler & Fergus' deconvolution: each ReLU passes only positive incoming "
                "gradients, ignoring the forward mask.",
    reference="Captum Deconvolution")
