"""The one gradient primitive: gradients of several target scores from one forward pass.

Every gradient method (saliency, SmoothGrad, Guided Backprop, DeconvNet, IG, the CAM family)
runs one forward pass for all its targets and then asks this module for ∂score_t/∂(input or
activation). Only ``torch.autograd.grad`` is used: nothing is written into ``.grad`` of a model
that other threads (browser sessions) share, and no hook is needed to read the result.

T targets are T vector-Jacobian products of the same graph, vᵀJ with v = e_t (the one-hot of
target t in each image's row of picked scores). Two ways to get them:

- **loop**: T backward passes through the retained graph, one per one-hot;
- **batched**: one backward pass with the T one-hots stacked (``is_grads_batched=True``, which
  vmaps the backward over the leading T dimension, so every backward kernel sees T× the batch).

Both give the same numbers (the same ops on the same values; ``tests/test_multi_target.py``).
Which is used is ``BATCHED_BACKWARD[device type]``, measured by ``bench/bench_targets.py``:
on the CPU (2 threads, ResNet-18, 64 px, K = 8) it is 10–20 % faster for the input-gradient
methods and 20 % slower for IG and SmoothGrad, whose batches are already large, so the loop is
kept; on CUDA it replaces T rounds of small kernel launches by one round of T-times-larger
kernels (the policy there is to be confirmed by the bench on a GPU). A graph whose backward cannot be vmapped (a custom autograd
function without a batching rule) raises on the batched pass; it then falls back to the loop,
on the graph retained for that purpose. The ReLU rules (``relu_rules``) vmap: their backward is
clamp and multiply.

Scores of independent images are summed over the batch before differentiating, which gives
each image its own gradient as long as the model treats images independently (eval mode: no
batch statistics), which every ``LoadedModel`` guarantees.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

from ..engine import is_oom

Targets = Union[Sequence[int], torch.Tensor]
"""The same class indices for every image (a list), or one row per image (a B×T long tensor)."""


def pick_scores(scores: torch.Tensor, targets: Targets) -> torch.Tensor:
    """B×K scores → B×T: each image's scores for its targets (the same for all, or its own row)."""
    if isinstance(targets, torch.Tensor) and targets.dim() == 2:
        return scores.gather(1, targets.to(scores.device))
    return scores[:, torch.as_tensor(list(targets), device=scores.device)]


BATCHED_BACKWARD: dict[str, bool] = {"cpu": False, "cuda": True}
"""Device type → whether several targets share one vmapped backward pass (see the module docstring)."""


def target_gradients(scores: torch.Tensor, targets: Targets, wrt: torch.Tensor, *,
                     batched: bool | None = None) -> torch.Tensor:
    """∂scores[b, target_bt]/∂wrt for each target column t: T × (wrt's shape), float32.

    ``scores`` is B×K (one row per image of the batch ``wrt`` belongs to); ``targets`` the
    same indices for every image or a B×T tensor of each image's own. ``batched`` forces the
    one-pass (True) or the loop (False) path; None follows ``BATCHED_BACKWARD``.
    """
    picked = pick_scores(scores, targets)
    count = picked.shape[1]
    if batched is None:
        batched = BATCHED_BACKWARD.get(wrt.device.type, False)
    if batched and count > 1:
        try:
            return _batched_gradients(picked, wrt).float()
        except RuntimeError as err:
            if is_oom(err):
                raise  # the engine halves the batch; the loop would need as much again
    grads = [torch.autograd.grad(picked[:, i].sum(), wrt, retain_graph=i < count - 1)[0] for i in range(count)]
    return torch.stack(grads).float()


def _batched_gradients(picked: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    """All T columns of ``picked`` (B×T) in one vmapped backward pass: T × (wrt's shape).

    The graph is retained so that ``target_gradients`` can fall back to the loop if this raises.
    """
    batch, count = picked.shape
    one_hots = torch.eye(count, dtype=picked.dtype, device=picked.device).unsqueeze(1).expand(count, batch, count)
    return torch.autograd.grad(picked, wrt, grad_outputs=one_hots, is_grads_batched=True, retain_graph=True)[0]


def input_gradients(module: torch.nn.Module, xs: torch.Tensor, targets: Targets) -> torch.Tensor:
    """∂y_t/∂x for each target t and each image of the batch ``xs`` (B×C×H×W): T×B×C×H×W.

    Runs in the caller's precision section and under any backward rule the caller opened
    (``relu_rules.relu_backward_rule``): the rules compose with this primitive.
    """
    with torch.enable_grad():
        xs = xs.detach().clone().requires_grad_(True)
        scores = module(xs).float()
        return target_gradients(scores, targets, xs)
