"""Class activation maps: CAM, Grad-CAM, Grad-CAM++ and Guided Grad-CAM.

Each is a few lines on the shared pipeline (``cam_pipeline``: one forward for all targets at
``layer``, gradients ∂y_t/∂A from ``target_gradients``, ReLU, bilinear upsampling, unnormalised).

- **CAM** (Zhou et al. 2016): M_t = Σ_k W[t, k] A_k, with W the final linear layer that follows
  a global average pool of A. Defined only there: we check numerically that the logits equal
  mean(A) · Wᵀ + b and raise ``ParameterError`` otherwise (VGG/AlexNet's dense stacks, or
  a non-final layer). No ReLU, as in the paper: the spatial mean of the layer-resolution map
  is the logit minus the bias.
- **Grad-CAM** (Selvaraju et al. 2017): ReLU(Σ_k mean(∂y_t/∂A_k) A_k) — pytorch-grad-cam's
  ``GradCAM`` and Captum's ``LayerGradCam(relu_attributions=True)``. On a GAP + linear head it
  is ReLU(CAM) / (h·w).
- **Grad-CAM++** (Chattopadhay et al. 2018): weights Σ_ij ReLU(g) α with
  α = g² / (2g² + Σ_ij A · g³ + 1e-6) (zero where g = 0), g = ∂y_t/∂A, exactly
  pytorch-grad-cam's ``GradCAMPlusPlus`` (the paper's closed form for an exponential of the
  score, applied to the raw score).
- **Guided Grad-CAM**: Guided Backprop × upsampled Grad-CAM (attribution C×H×W; map =
  |·| max over channels). Captum's ``GuidedGradCam`` upsamples with nearest neighbours by
  default; we use bilinear as the Grad-CAM paper, which is Captum's
  ``interpolate_mode="bilinear"``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import ParameterError
from .backprop_rules import rule_gradients
from .base import MethodOutput
from .cam_pipeline import cam_method, gradient_cam, gradient_cam_maps, read_layer, to_input_size, weighted_sum

if TYPE_CHECKING:
    from ..engine import Engine, Progress
    from ..model_handle import LoadedModel


def mean_gradient(activation: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM's channel weights: the spatial mean of ∂y_t/∂A_k, T×K."""
    return gradients.mean(dim=(2, 3))


def gradcampp_weights(activation: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++'s channel weights Σ_ij ReLU(g) α, T×K (pytorch-grad-cam's eq. 19)."""
    g2 = gradients * gradients
    alpha = g2 / (2 * g2 + activation.sum(dim=(1, 2)).view(1, -1, 1, 1) * g2 * gradients + 1e-6)
    alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
    return (gradients.clamp(min=0) * alpha).sum(dim=(2, 3))


def _guided_gradcam(model: LoadedModel, x: torch.Tensor, targets: list[int], *, engine: Engine,
                    progress: Progress | None = None, layer: str) -> MethodOutput:
    """Guided Backprop × Grad-CAM: attribution T×C×H×W, map T×H×W."""
    cams = to_input_size(gradient_cam_maps(model, x, targets, layer, engine=engine, weights=mean_gradient), x)
    guided, _ = rule_gradients(model, x.unsqueeze(0), targets, "guided", engine=engine)
    attribution = guided[:, 0] * cams.unsqueeze(1)
    return MethodOutput(maps=attribution.abs().amax(dim=1), attributions=attribution, extras={"layer": layer})


def _final_linear(module: nn.Module, channels: int) -> nn.Linear | None:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears and linears[-1].in_features == channels else None


def _cam(model: LoadedModel, x: torch.Tensor, targets: list[int], *, engine: Engine,
         progress: Progress | None = None, layer: str) -> MethodOutput:
    """CAM, T×H×W; ``ParameterError`` unless ``layer`` is followed by GAP and the final linear layer."""
    # fp32: the head check below compares the logits to a recomputation.
    readout = read_layer(model, x, targets, layer, engine=engine, gradients=False, section="score_difference")
    activation, logits = readout.activation, readout.logits
    fc = _final_linear(model.module, activation.shape[0])
    not_defined = (f"CAM is defined only for a layer followed by global average pooling and the final "
                   f"linear layer; '{layer}' of {model.name} is not (use Grad-CAM, which generalises it).")
    if fc is None:
        raise ParameterError(not_defined)
    weight = fc.weight.detach().float()
    bias = torch.zeros(weight.shape[0], device=weight.device) if fc.bias is None else fc.bias.detach().float()
    recomputed = activation.mean(dim=(1, 2)) @ weight.T + bias
    if not bool(((recomputed - logits).abs() <= 1e-3 * (1 + logits.abs().max())).all()):  # the one sync
        raise ParameterError(not_defined)
    maps = weighted_sum(weight[torch.as_tensor(targets, device=weight.device)], activation)
    return MethodOutput(maps=to_input_size(maps, x, relu=False), extras={"layer": layer})


CAM = cam_method("cam", "CAM", _cam, reference="closed form (final linear weights)",
                 description="Final linear weights × last feature maps; needs a global-average-pool + linear head "
                             "(Zhou et al. 2016).")
GRADCAM = gradient_cam("gradcam", "Grad-CAM", weights=mean_gradient,
                       reference="pytorch-grad-cam GradCAM, Captum LayerGradCam",
                       description="Feature maps weighted by their mean gradient, ReLU (Selvaraju et al. 2017).")
GRADCAMPP = gradient_cam("gradcampp", "Grad-CAM++", weights=gradcampp_weights,
                         reference="pytorch-grad-cam GradCAMPlusPlus",
                         description="Feature maps weighted by positive gradients with pixel-wise α "
                                     "(Chattopadhay et al. 2018).")
GUIDED_GRADCAM = cam_method("guided_gradcam", "Guided Grad-CAM", _guided_gradcam,
                            reference="Captum GuidedGradCam (interpolate_mode='bilinear')",
                            description="Guided Backprop × upsampled Grad-CAM (Selvaraju et al. 2017).")
