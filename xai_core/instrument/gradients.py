"""The one gradient primitive: gradients of several target scores from one forward pass.

Every gradient method (saliency, SmoothGrad, Guided Backprop, DeconvNet, IG, the CAM family)
runs one forward pass for all its targets and then asks this module for ∂score_t/∂(input or
activation), one backward pass per target through the retained graph. Only
``torch.autograd.grad`` is used: nothing is written into ``.grad`` of a model that other
threads (browser sessions) share, and no hook is needed to read the result.

Scores of independent images are summed over the batch before differentiating, which gives
each image its own gradient as long as the model treats images independently (eval mode: no
batch statistics), which every ``LoadedModel`` guarantees.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch


Targets = Union[Sequence[int], torch.Tensor]
"""The same class indices for every image (a list), or one row per image (a B×T long tensor)."""


def pick_scores(scores: torch.Tensor, targets: Targets) -> torch.Tensor:
    """B×K scores → B×T: each image's scores for its targets (the same for all, or its own row)."""
    if isinstance(targets, torch.Tensor) and targets.dim() == 2:
        return scores.gather(1, targets.to(scores.device))
    return scores[:, torch.as_tensor(list(targets), device=scores.device)]


def target_gradients(scores: torch.Tensor, targets: Targets, wrt: torch.Tensor) -> torch.Tensor:
    """∂scores[b, target_bt]/∂wrt for each target column t: T × (wrt's shape), float32.

    ``scores`` is B×K (one row per image of the batch ``wrt`` belongs to); ``targets`` the
    same indices for every image or a B×T tensor of each image's own.
    """
    picked = pick_scores(scores, targets)
    count = picked.shape[1]
    grads = [torch.autograd.grad(picked[:, i].sum(), wrt, retain_graph=i < count - 1)[0] for i in range(count)]
    return torch.stack(grads).float()


def input_gradients(module: torch.nn.Module, xs: torch.Tensor, targets: Targets) -> torch.Tensor:
    """∂y_t/∂x for each target t and each image of the batch ``xs`` (B×C×H×W): T×B×C×H×W.

    Runs in the caller's precision section and under any backward rule the caller opened
    (``relu_rules.relu_backward_rule``): the rules compose with this primitive.
    """
    with torch.enable_grad():
        xs = xs.detach().clone().requires_grad_(True)
        scores = module(xs).float()
        return target_gradients(scores, targets, xs)
