"""The one pipeline every class activation map goes through.

A CAM reads the activation A (K×h×w) of one convolutional ``layer`` (default: the model's
``default_layer``, its last feature map) and combines its channels into one map per target.
What differs between the variants is only how they combine them, so a variant is one small
function plugged in here (pytorch-grad-cam's ``BaseCAM.get_cam_weights`` / ``get_cam_image``):

- a **channel-weight function** ``weights(A, G) -> T×K`` (Grad-CAM: mean gradient; Grad-CAM++;
  XGrad-CAM), the map being Σ_k w_tk A_k;
- an **element-wise map function** ``layer_map(A, G) -> T×h×w`` (HiResCAM, LayerCAM), for
  variants that weight each position of each channel;

with G = ∂y_t/∂A (T×K×h×w) for each target t. The pipeline runs **one** forward pass for all
targets, capturing the layer with a thread-filtered hook that is removed in ``finally``
(``instrument.capture``), asks ``instrument.gradients.target_gradients`` for G (one backward
per target through the retained graph, ``autograd.grad`` only, wrt the captured activation),
weights, applies the ReLU where the method has one, and upsamples bilinearly to the input size
(``align_corners=False``, the half-pixel convention of OpenCV's ``resize`` that pytorch-grad-cam
uses). Everything stays on the device and is not normalised (normalise for display; pytorch-grad-cam
min-max normalises every map, so comparisons with it are made after min-max).

A layer need not be convolutional: its output is read as a feature map through its layout
(``instrument.layout``: NCHW as is, a Swin stage's NHWC permuted, a ViT's tokens with the
class/distillation/register tokens dropped and the patch tokens on their grid), which is
pytorch-grad-cam's hand-written ``reshape_transform`` read from the model. G is taken with
respect to the layer's own output and mapped the same way (the mapping only rearranges).

A module called several times in one forward pass (the ReLU shared inside a torchvision ResNet
block) is read at its last call, by every CAM (``instrument.capture``); pytorch-grad-cam's hooks
read its first call, so on such a layer the two describe different tensors.

Precision: the forward pass that yields A and G runs in the ``cam`` section; gradient-free
variants that compare scores of perturbed inputs (Score-CAM, Ablation-CAM, CAM's head check)
run theirs in ``score_difference`` (``xai_core.precision``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from ..instrument.capture import capture
from ..instrument.gradients import Targets, target_gradients
from ..instrument.layout import Layout
from .base import BatchFn, Method, MethodFn, MethodOutput, Param

if TYPE_CHECKING:
    from ..engine import Engine, Progress
    from ..model_handle import LoadedModel

LAYER = Param(str, "", widget="layer", label="Layer",
              help="convolutional layer or transformer block (dotted module name); default: the model's own")

ChannelWeights = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(A: K×h×w, G: T×K×h×w) -> T×K channel weights."""
LayerMap = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(A: K×h×w, G: T×K×h×w) -> T×h×w map at layer resolution, before the ReLU."""


@dataclass
class LayerReadout:
    """One forward pass seen at ``layer``, fp32, on the device."""
    activation: torch.Tensor          # K×h×w feature map
    logits: torch.Tensor              # number of classes
    gradients: torch.Tensor | None    # T×K×h×w, ∂y_t/∂A for each target (None when not asked for)
    calls: int                        # how many times the layer ran (the activation is the last call's)
    output: torch.Tensor              # the layer's output in its own layout (detached, its dtype)
    layout: Layout                    # how ``output`` becomes ``activation``


def read_layer_batch(model: LoadedModel, xs: torch.Tensor, targets: Targets, layer: str, *, engine: Engine,
                     gradients: bool = True, section: str = "cam") -> LayerReadout:
    """One forward pass of the batch ``xs`` (B×C×H×W) for all targets, capturing ``layer``: a
    ``LayerReadout`` whose tensors have a leading image dimension (activation B×K×h×w, logits
    B×classes, gradients T×B×K×h×w). ``targets`` as in ``instrument.gradients``.

    For gradients the input requires grad, so the activation is in the graph even when the
    model's parameters do not require grad (we never change that flag on a shared model).
    """
    xs = xs.detach().clone().requires_grad_(gradients)
    with torch.set_grad_enabled(gradients), capture(model.module, layer, detach=not gradients) as seen:
        with engine.precision(section):
            logits = model.module(xs).float()
        output, layout = seen.activation(), seen.layout()
        grads = layout.to_map(target_gradients(logits, targets, output)) if gradients else None
    return LayerReadout(activation=layout.to_map(output.detach()).float(), logits=logits.detach(), gradients=grads,
                        calls=seen.calls, output=output.detach(), layout=layout)


def read_layer(model: LoadedModel, x: torch.Tensor, targets: list[int], layer: str, *, engine: Engine,
               gradients: bool = True, section: str = "cam") -> LayerReadout:
    """``read_layer_batch`` of the single image ``x`` (C×H×W): activation K×h×w, gradients T×K×h×w."""
    readout = read_layer_batch(model, x.unsqueeze(0), targets, layer, engine=engine, gradients=gradients,
                               section=section)
    return LayerReadout(activation=readout.activation[0], logits=readout.logits[0],
                        gradients=None if readout.gradients is None else readout.gradients[:, 0],
                        calls=readout.calls, output=readout.output[0], layout=readout.layout)


def upsample(maps: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """T×h×w -> T×H×W, bilinear (align_corners=False)."""
    return F.interpolate(maps.unsqueeze(1).float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def weighted_sum(weights: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """T×K weights, K×h×w activation -> T×h×w."""
    return torch.einsum("tk,khw->thw", weights, activation)


def to_input_size(maps: torch.Tensor, x: torch.Tensor, *, relu: bool = True) -> torch.Tensor:
    """Layer-resolution maps T×h×w -> T×H×W at ``x``'s size, after the ReLU where ``relu``."""
    return upsample(maps.clamp(min=0) if relu else maps, x.shape[-2:])


def combine(activation: torch.Tensor, gradients: torch.Tensor, weights: ChannelWeights | None,
            layer_map: LayerMap | None) -> torch.Tensor:
    """One image's CAM at layer resolution before the ReLU, T×h×w, from A (K×h×w) and G (T×K×h×w)."""
    if layer_map is not None:
        return layer_map(activation, gradients)
    assert weights is not None
    return weighted_sum(weights(activation, gradients), activation)


def gradient_cam_maps(model: LoadedModel, x: torch.Tensor, targets: list[int], layer: str, *, engine: Engine,
                      weights: ChannelWeights | None = None, layer_map: LayerMap | None = None) -> torch.Tensor:
    """A gradient CAM at layer resolution before the ReLU, T×h×w: ``weights`` or ``layer_map`` of (A, ∂y_t/∂A)."""
    readout = read_layer(model, x, targets, layer, engine=engine)
    assert readout.gradients is not None
    return combine(readout.activation, readout.gradients, weights, layer_map)


def cam_method(name: str, label: str, fn: MethodFn, *, description: str, reference: str = "",
               params: dict[str, Param] | None = None, class_agnostic: bool = False,
               batch_fn: BatchFn | None = None) -> Method:
    """A CAM-family ``Method``: a ``layer`` parameter first, then ``params``."""
    return Method(name, label, "cam", fn, params={"layer": LAYER, **(params or {})}, uses_layer=True,
                  class_agnostic=class_agnostic, description=description, reference=reference, batch_fn=batch_fn)


def gradient_cam(name: str, label: str, *, weights: ChannelWeights | None = None,
                 layer_map: LayerMap | None = None, relu: bool = True, description: str,
                 reference: str = "") -> Method:
    """A gradient CAM from exactly one of a channel-weight or an element-wise map function."""
    if (weights is None) == (layer_map is None):
        raise ValueError(f"CAM '{name}': give exactly one of weights and layer_map.")

    def explain_cam(model: LoadedModel, x: torch.Tensor, targets: list[int], *, engine: Engine,
                    progress: Progress | None = None, layer: str) -> MethodOutput:
        maps = gradient_cam_maps(model, x, targets, layer, engine=engine, weights=weights, layer_map=layer_map)
        return MethodOutput(maps=to_input_size(maps, x, relu=relu), extras={"layer": layer})

    def explain_cam_batch(model: LoadedModel, xs: torch.Tensor, targets: torch.Tensor, *, engine: Engine,
                          progress: Progress | None = None, layer: str) -> MethodOutput:
        def batch(start: int, stop: int) -> torch.Tensor:
            readout = read_layer_batch(model, xs[start:stop], targets[start:stop], layer, engine=engine)
            assert readout.gradients is not None
            maps = torch.stack([combine(a, readout.gradients[:, i], weights, layer_map)
                                for i, a in enumerate(readout.activation)])               # b×T×h×w
            return to_input_size(maps.flatten(0, 1), xs, relu=relu).view(*maps.shape[:2], *xs.shape[-2:])

        maps = engine.map_cat(batch, len(xs), section="cam", key=f"{name}:images:{model.name}:{tuple(xs.shape[1:])}",
                              progress=progress, message=f"{label}: images")
        return MethodOutput(maps=maps, extras={"layer": layer})

    explain_cam.__doc__ = f"{label} of ``x`` for each target at ``layer``: T×H×W, unnormalised."
    explain_cam_batch.__doc__ = f"{label} of every image of ``xs`` for its own targets: B×T×H×W."
    return cam_method(name, label, explain_cam, description=description, reference=reference,
                      batch_fn=explain_cam_batch)
