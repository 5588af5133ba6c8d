"""LayerCAM (Jiang et al. 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization").

Each position of each channel is weighted by its own positive gradient, so the map keeps the
spatial detail that Grad-CAM's channel-mean weight averages away (which matters at shallow,
high-resolution layers):

    M_t = ReLU(Σ_k ReLU(∂y_t/∂A_k) ⊙ A_k)

This is pytorch-grad-cam's ``LayerCAM`` (without ``eigen_smooth``). The paper's tanh rescaling is
only for fusing maps of several layers, which neither implementation does for one layer.
"""
from __future__ import annotations

import torch

from .cam_pipeline import gradient_cam


def positive_gradient_map(activation: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Σ_k ReLU(∂y_t/∂A_k) ⊙ A_k at layer resolution: T×h×w."""
    return (gradients.clamp(min=0) * activation.unsqueeze(0)).sum(dim=1)


LAYERCAM = gradient_cam(
    "layercam", "LayerCAM", layer_map=positive_gradient_map, reference="pytorch-grad-cam LayerCAM",
    description="Feature maps weighted position by position by their positive gradient (Jiang et al. 2021).")
