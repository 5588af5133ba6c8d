"""HiResCAM (Draelos & Carin 2020, "Use HiResCAM instead of Grad-CAM for faithful explanations").

Grad-CAM averages the gradient over each channel before weighting it; HiResCAM multiplies
gradient and activation element-wise instead:

    M_t = ReLU(Σ_k ∂y_t/∂A_k ⊙ A_k)

When the gradients are spatially constant (a global average pool and one linear layer after
``layer``) it equals Grad-CAM. Whenever the score is affine in the activation (the layer
followed by a flatten or an average pool and one linear layer), the spatial sum of the map
before the ReLU is the score minus the bias: its faithfulness property. This is
pytorch-grad-cam's ``HiResCAM`` (without ``eigen_smooth``).

On a layer whose only consumer is a LayerNorm over channels (a Swin's last stage, before its
final norm) the map vanishes: LayerNorm is invariant to the scale of its input (up to its ε), so
Σ_k ∂y/∂A_k · A_k = 0 at every position, and what remains is rounding. Choose the layer before.
"""
from __future__ import annotations

import torch

from .cam_pipeline import gradient_cam


def gradient_times_activation_map(activation: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Σ_k ∂y_t/∂A_k ⊙ A_k at layer resolution: T×h×w."""
    return (gradients * activation.unsqueeze(0)).sum(dim=1)


HIRESCAM = gradient_cam(
    "hirescam", "HiResCAM", layer_map=gradient_times_activation_map, reference="pytorch-grad-cam HiResCAM",
    description="Gradient × activation element-wise, summed over channels (Draelos & Carin 2020).")
