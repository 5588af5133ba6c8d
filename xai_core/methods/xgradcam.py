"""XGrad-CAM (Fu et al. 2020, "Axiom-based Grad-CAM: Towards Accurate Visualization and
Explanation of CNNs").

The channel weight is the gradient averaged with the activation's own spatial distribution
as weights (instead of Grad-CAM's uniform mean), the choice that satisfies the paper's
sensitivity and conservation axioms:

    w_tk = Σ_ij (A_kij / (Σ_ij A_kij + ε)) ∂y_t/∂A_kij,   M_t = ReLU(Σ_k w_tk A_k)

with ε = 1e-7, as pytorch-grad-cam's ``XGradCAM`` (which this equals). On a global average
pool + linear head the gradient is constant, W_tk / (h·w), so w_tk = W_tk / (h·w) up to ε:
XGrad-CAM is Grad-CAM there.
"""
from __future__ import annotations

import torch

from .cam_pipeline import gradient_cam

EPS = 1e-7


def activation_weighted_gradient(activation: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM's channel weights, T×K."""
    totals = activation.sum(dim=(1, 2)).view(1, -1, 1, 1)
    return (gradients * activation.unsqueeze(0) / (totals + EPS)).sum(dim=(2, 3))


XGRADCAM = gradient_cam(
    "xgradcam", "XGrad-CAM", weights=activation_weighted_gradient, reference="pytorch-grad-cam XGradCAM",
    description="Feature maps weighted by their gradient averaged over the map's own activation "
                "(Fu et al. 2020).")
