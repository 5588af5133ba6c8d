"""Class activation maps: CAM, Grad-CAM, Grad-CAM++ and Guided Grad-CAM.

All read the activation A (K×h×w) of one convolutional ``layer`` (default: the model's
``default_layer``, its last feature map) during one forward pass whose logits serve every
target; gradients ∂y_t/∂A come from ``torch.autograd.grad`` on the captured activation (a
thread-filtered hook, removed afterwards — see ``xai_core.hooks``). Maps are bilinearly
upsampled (``align_corners=False``, as OpenCV's ``resize`` used by pytorch-grad-cam) to the
input size and are not normalised (normalise for display).

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

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError
from ..hooks import capture, feature_map_check
from .backprop_rules import rule_gradients
from .base import Method, MethodOutput, Param

LAYER = Param(str, "", help="convolutional layer (dotted module name); default: the model's last feature map")


def upsample(maps: torch.Tensor, size) -> torch.Tensor:
    """T×h×w -> T×H×W, bilinear (align_corners=False)."""
    return F.interpolate(maps.unsqueeze(1).float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def activation_and_gradients(model, x: torch.Tensor, targets: list[int], layer: str, *,
                             engine) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass for all targets: (A: K×h×w, ∂y_t/∂A: T×K×h×w), both fp32.

    The input requires grad so the activation is in the graph even when the model's
    parameters do not require grad (we never change that flag on a shared model).
    """
    xs = x.detach().unsqueeze(0).requires_grad_(True)
    with torch.enable_grad():
        with capture(model.module, layer) as seen:
            with engine.autocast():
                logits = model.module(xs).float()
        activation = seen.activation()
        feature_map_check(activation, layer)
        grads = [seen.gradients(logits[0, t], retain_graph=i < len(targets) - 1)[0] for i, t in enumerate(targets)]
    return activation[0].detach().float(), torch.stack(grads).float()


def weighted_sum(weights: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """T×K weights, K×h×w activation -> T×h×w."""
    return torch.einsum("tk,khw->thw", weights, activation)


def gradcam_maps(model, x, targets, layer, *, engine) -> torch.Tensor:
    """Grad-CAM at layer resolution, T×h×w."""
    activation, grads = activation_and_gradients(model, x, targets, layer, engine=engine)
    return weighted_sum(grads.mean(dim=(2, 3)), activation).clamp(min=0)


def _gradcam(model, x, targets, *, engine, progress=None, layer):
    return MethodOutput(maps=upsample(gradcam_maps(model, x, targets, layer, engine=engine), x.shape[-2:]),
                        extras={"layer": layer})


def _gradcampp(model, x, targets, *, engine, progress=None, layer):
    activation, g = activation_and_gradients(model, x, targets, layer, engine=engine)
    g2 = g * g
    alpha = g2 / (2 * g2 + activation.sum(dim=(1, 2)).view(1, -1, 1, 1) * g2 * g + 1e-6)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (g.clamp(min=0) * alpha).sum(dim=(2, 3))
    maps = weighted_sum(weights, activation).clamp(min=0)
    return MethodOutput(maps=upsample(maps, x.shape[-2:]), extras={"layer": layer})


def _guided_gradcam(model, x, targets, *, engine, progress=None, layer):
    cams = upsample(gradcam_maps(model, x, targets, layer, engine=engine), x.shape[-2:])
    guided, relu_calls = rule_gradients(model, x, targets, "guided", engine=engine)
    attribution = guided * cams.unsqueeze(1)
    return MethodOutput(maps=attribution.abs().amax(dim=1), attributions=attribution,
                        extras={"layer": layer, "relus_rerouted": relu_calls})


def _final_linear(module: nn.Module, channels: int) -> nn.Linear | None:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears and linears[-1].in_features == channels else None


def _cam(model, x, targets, *, engine, progress=None, layer):
    # fp32 forward (no autocast): the head check below compares the logits to a recomputation.
    with torch.no_grad(), capture(model.module, layer, detach=True) as seen:
        logits = model.module(x.unsqueeze(0)).float()[0]
    feature_map_check(seen.activation(), layer)
    activation = seen.activation()[0].float()
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
    return MethodOutput(maps=upsample(maps, x.shape[-2:]), extras={"layer": layer})


def _cam_method(name: str, label: str, fn, description: str) -> Method:
    return Method(name, label, "cam", fn, params={"layer": LAYER}, uses_layer=True, description=description)


CAM = _cam_method("cam", "CAM", _cam,
                  "Final linear weights × last feature maps; needs a global-average-pool + linear head "
                  "(Zhou et al. 2016).")
GRADCAM = _cam_method("gradcam", "Grad-CAM", _gradcam,
                      "Feature maps weighted by their mean gradient, ReLU (Selvaraju et al. 2017).")
GRADCAMPP = _cam_method("gradcampp", "Grad-CAM++", _gradcampp,
                        "Feature maps weighted by positive gradients with pixel-wise α "
                        "(Chattopadhay et al. 2018).")
GUIDED_GRADCAM = _cam_method("guided_gradcam", "Guided Grad-CAM", _guided_gradcam,
                             "Guided Backprop × upsampled Grad-CAM (Selvaraju et al. 2017).")
