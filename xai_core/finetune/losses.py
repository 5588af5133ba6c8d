"""Saliency in the loss: differentiable Grad-CAM/CAM and the internship report's five loss forms.

The report (source document 004, ch. 9) fine-tunes a classifier so that its Grad-CAM lands on
the object. The map must therefore be differentiable in the weights:

- **Grad-CAM** M = ReLU(Σ_k mean_ij(∂y_c/∂A_k) A_k), with ∂y_c/∂A taken by ``autograd.grad``
  with ``create_graph=True``: the gradient is itself a function of the weights, kept in the
  graph, so ∂M/∂θ includes the path through the channel weights (second order);
- **CAM** M = Σ_k W[c, k] A_k, where the layer is followed by global average pooling and the
  final linear layer W (checked on the logits, as ``methods.cam``); no ReLU, as in the paper.

Both are upsampled bilinearly to the input size (``align_corners=False``, as every CAM of the
library), for the true class c of each image. Each map is min-max normalised,
N(M) = (M − min M) / (max M − min M + ε), ε = ``NORM_EPS`` keeping a constant map (a ReLU'd
map that is all zero) finite: it scores 0 instead of the metrics' NaN. Then, with R the
ground-truth mask (the same definitions as ``metrics.localisation``, which they match to ~ε on
the same maps):

- HAGTR = max_{p∈R} N_p. With ``temperature=None`` the plain max (its gradient reaches only the
  arg-max pixel); with a temperature τ > 0 a smooth max Σ_{p∈R} softmax(N/τ)_p N_p, a weighted
  mean that stays in [0, 1] (a logsumexp would exceed 1 by up to τ·log|R|) and tends to the max
  as τ → 0, with a gradient on every pixel of R;
- MAGTR = Σ_{p∈R} N_p / |R|;  MANGTR = Σ_{p∉R} N_p / |R̄| (0 when R covers the image).

Loss forms (``LOSS_FORMS``), per image and then averaged over the batch, so that the loss of a
batch is the mean of its images' losses and gradient accumulation over equal micro-batches
reproduces one large batch exactly:

- ``ce``: CE (the maps are still computed, not differentiated, to report the scores);
- ``ce_x_1m_hagtr``: CE·(1 − HAGTR) (the report's earlier work);
- ``ce_x_1m_magtr``: CE·(1 − MAGTR);
- ``ce_div_magtr``: CE / (MAGTR + ``DIVISION_EPS``) (the ε bounds the loss when the map misses the
  object entirely; the report found this form unstable, and it remains so);
- ``weighted``: k1·CE + k2·(1 − MAGTR);
- ``weighted_mangtr``: k1·CE + k2·(1 − MAGTR) + k3·MANGTR.

The layer is captured with ``instrument.capture`` (a hook removed in ``finally``). ∂y_c/∂A is taken
with ``torch.autograd.grad`` directly, not ``instrument.gradients``, whose primitive neither creates
nor keeps the graph a loss needs. The input is
made to require grad so the activation is in the graph even when no parameter before the layer
trains (head-only fine-tuning).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError
from ..instrument.capture import capture
from ..methods.cam_pipeline import upsample

LOSS_FORMS = ("ce", "ce_x_1m_hagtr", "ce_x_1m_magtr", "ce_div_magtr", "weighted", "weighted_mangtr")
SALIENCY_MAPS = ("gradcam", "cam")
NORM_EPS = 1e-8
"""Added to the span of each map in its min-max normalisation."""
DIVISION_EPS = 1e-3
"""Added to MAGTR in the ``ce_div_magtr`` form (the loss is then at most 1000·CE)."""
_HEAD_CHECK_TOLERANCE = 1e-3


def check_form(form: str, saliency: str = "gradcam") -> None:
    """``ParameterError`` for an unknown loss form or saliency map."""
    if form not in LOSS_FORMS:
        raise ParameterError(f"Unknown loss form '{form}'; choose one of {', '.join(LOSS_FORMS)}.")
    if saliency not in SALIENCY_MAPS:
        raise ParameterError(f"Unknown saliency map '{saliency}'; choose one of {', '.join(SALIENCY_MAPS)}.")


def normalise(maps: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """B×H×W maps, each min-max rescaled to [0, 1) (differentiable; a constant map becomes 0)."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    high = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - low) / (high - low + eps)


def localisation_terms(maps: torch.Tensor, masks: torch.Tensor, *, temperature: float | None = None,
                       eps: float = NORM_EPS) -> dict[str, torch.Tensor]:
    """Per-image ``hagtr``, ``magtr``, ``mangtr`` (each B) of B×H×W maps and B×H×W masks (bool).

    ``ParameterError`` when a mask is empty (the scores would be undefined)."""
    inside = masks.to(device=maps.device, dtype=torch.bool)
    count = inside.sum(dim=(-2, -1))
    if bool((count == 0).any()):
        raise ParameterError("Every image needs a non-empty ground-truth mask for the saliency loss.")
    scaled = normalise(maps, eps)
    outside_count = (~inside).sum(dim=(-2, -1)).clamp(min=1)
    if temperature is None:
        hagtr = scaled.masked_fill(~inside, -torch.inf).amax(dim=(-2, -1))
    else:
        if temperature <= 0:
            raise ParameterError("The smooth-max temperature must be positive.")
        weights = (scaled / temperature).masked_fill(~inside, -torch.inf).flatten(1).softmax(dim=1)
        hagtr = (weights * scaled.flatten(1)).sum(dim=1)
    return {"hagtr": hagtr,
            "magtr": (scaled * inside).sum(dim=(-2, -1)) / count,
            "mangtr": (scaled * ~inside).sum(dim=(-2, -1)) / outside_count}


def combine_loss(form: str, ce: torch.Tensor, terms: dict[str, torch.Tensor], *, k1: float = 1.0, k2: float = 1.0,
                 k3: float = 1.0) -> torch.Tensor:
    """Per-image loss (B) of the form ``form`` from per-image CE and ``localisation_terms``."""
    check_form(form)
    magtr = terms["magtr"]
    if form == "ce":
        return ce
    if form == "ce_x_1m_hagtr":
        return ce * (1 - terms["hagtr"])
    if form == "ce_x_1m_magtr":
        return ce * (1 - magtr)
    if form == "ce_div_magtr":
        return ce / (magtr + DIVISION_EPS)
    weighted = k1 * ce + k2 * (1 - magtr)
    return weighted if form == "weighted" else weighted + k3 * terms["mangtr"]


def _final_linear(module: nn.Module, channels: int) -> nn.Linear:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1].in_features != channels:
        raise ParameterError("CAM needs a layer followed by global average pooling and the final linear layer.")
    return linears[-1]


def saliency_maps(module: nn.Module, x: torch.Tensor, labels: torch.Tensor, *, layer: str,
                  saliency: str = "gradcam", create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits B×classes, maps B×H×W at the input size) for the true class of each image of ``x``.

    With ``create_graph`` the maps are differentiable in the module's parameters."""
    check_form("ce", saliency)
    x = x.detach().requires_grad_(True)
    with capture(module, layer) as seen:
        logits = module(x).float()
        output, layout = seen.activation(), seen.layout()
    activation = layout.to_map(output).float()                         # B×K×h×w
    if saliency == "gradcam":
        score = logits.gather(1, labels.view(-1, 1)).sum()            # images are independent: one backward
        # retained: the loss backpropagates through this forward pass afterwards
        (gradient,) = torch.autograd.grad(score, output, retain_graph=True, create_graph=create_graph)
        weights = layout.to_map(gradient).float().mean(dim=(-2, -1))   # B×K
        maps = torch.einsum("bk,bkhw->bhw", weights, activation).clamp(min=0)
    else:
        fc = _final_linear(module, activation.shape[1])
        recomputed = fc(activation.mean(dim=(-2, -1)))
        if not bool(((recomputed - logits).abs() <= _HEAD_CHECK_TOLERANCE * (1 + logits.abs().max())).all()):
            raise ParameterError(f"CAM needs '{layer}' to be followed by global average pooling and the final "
                                 "linear layer; use Grad-CAM.")
        maps = torch.einsum("bk,bkhw->bhw", fc.weight[labels].float(), activation)
    return logits, upsample(maps, x.shape[-2:])


def saliency_loss(model_module: nn.Module, x: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, *,
                  layer: str, form: str, k1: float = 1.0, k2: float = 1.0, k3: float = 1.0,
                  saliency: str = "gradcam", temperature: float | None = None,
                  differentiable: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, terms) for a batch: x B×C×H×W, labels B (long), masks B×H×W (bool, input size).

    ``loss`` is the batch mean of the per-image loss of ``form``; ``terms`` the detached batch
    means of ``ce``, ``hagtr``, ``magtr``, ``mangtr``, ``loss`` and ``accuracy``. With
    ``differentiable=False`` (validation) the maps are not kept in the graph."""
    check_form(form, saliency)
    logits, maps = saliency_maps(model_module, x, labels, layer=layer, saliency=saliency,
                                 create_graph=differentiable and form != "ce")
    ce = F.cross_entropy(logits, labels, reduction="none")
    terms = localisation_terms(maps, masks, temperature=temperature)
    loss = combine_loss(form, ce, terms, k1=k1, k2=k2, k3=k3).mean()
    report = {name: value.detach().mean() for name, value in terms.items()}
    report |= {"ce": ce.detach().mean(), "loss": loss.detach(),
               "accuracy": (logits.argmax(dim=1) == labels).float().mean()}
    return loss, report
