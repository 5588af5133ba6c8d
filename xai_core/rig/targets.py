"""RIG step 1: the classifier's logits on the training images, and the paper's regression targets."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..engine import Engine


def modified_targets(logits: torch.Tensor, labels: torch.Tensor, classes: Sequence[int], alpha: float) -> torch.Tensor:
    """The paper's regression targets: images of A get α off their B logit, images of B α off their A logit."""
    a, b = classes
    targets = logits.clone()
    targets[labels == a, b] -= alpha
    targets[labels == b, a] -= alpha
    return targets


def batched_logits(module: nn.Module, images: torch.Tensor, engine: Engine) -> torch.Tensor:
    """fp32 pre-softmax outputs of ``module`` on ``images`` (N×C×H×W, on the CPU), returned on the CPU."""
    def logits(start: int, stop: int) -> torch.Tensor:
        with torch.no_grad():
            return module(images[start:stop].to(engine.device)).float()

    return engine.map_cat(logits, len(images), section="logits", key=f"rig-logits:{type(module).__name__}").cpu()
