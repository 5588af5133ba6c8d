"""Guided Backprop (Springenberg et al. 2015) and DeconvNet (Zeiler & Fergus 2014).

Both are the input gradient with the ReLU backward rule replaced (see ``relu_rules``): one
forward pass under the rule, then one backward pass per target through the retained graph.
Matches Captum's ``GuidedBackprop`` and ``Deconvolution`` (which hook ``nn.ReLU`` modules and
so miss functional ReLUs; ours also covers ``F.relu``/``torch.relu`` and in-place ReLUs).
The map is the absolute value, max over colour channels (as for saliency); the signed
C×H×W result is the attribution.
"""
from __future__ import annotations

import torch

from .base import Method, MethodOutput
from .relu_rules import relu_backward_rule


def rule_gradients(model, x: torch.Tensor, targets: list[int], rule: str, *, engine) -> tuple[torch.Tensor, int]:
    """∂y_t/∂x under the ReLU ``rule`` for each target: (T×C×H×W fp32, number of ReLUs rerouted)."""
    xs = x.detach().unsqueeze(0).requires_grad_(True)
    with torch.enable_grad():
        with engine.autocast(), relu_backward_rule(rule) as mode:
            logits = model.module(xs).float()
        grads = [torch.autograd.grad(logits[0, t], xs, retain_graph=i < len(targets) - 1)[0][0]
                 for i, t in enumerate(targets)]
    return torch.stack(grads).float(), mode.relu_calls


def _by_rule(rule: str):
    def explain_with_rule(model, x, targets, *, engine, progress=None):
        grads, relu_calls = rule_gradients(model, x, targets, rule, engine=engine)
        return MethodOutput(maps=grads.abs().amax(dim=1), attributions=grads,
                            extras={"relus_rerouted": relu_calls})
    return explain_with_rule


GUIDED_BACKPROP = Method(
    "guided_backprop", "Guided Backprop", "gradient", _by_rule("guided"),
    description="Gradient where each ReLU passes only positive gradients at positive inputs "
                "(Springenberg et al. 2015).")
DECONVNET = Method(
    "deconvnet", "DeconvNet", "gradient", _by_rule("deconvnet"),
    description="Zeiler & Fergus' deconvolution: each ReLU passes only positive incoming "
                "gradients, ignoring the forward mask.")
