"""Ablation-CAM (Desai & Ramaswamy 2020, "Ablation-CAM: Visual Explanations for Deep Convolutional
Network via Gradient-free Localization").

Gradient-free: each channel k of the activation A (K×h×w) of ``layer`` is ablated (set to
zero) in turn, and its weight is the relative drop of the target's score (the logit):

    w_tk = (y_t − y_t^(k)) / y_t,   M_t = ReLU(Σ_k w_tk A_k)

This is pytorch-grad-cam's ``AblationCAM`` (raw-logit ``ClassifierOutputTarget``, all channels:
``ratio_channels_to_ablate=1``). Like the paper and pytorch-grad-cam, a negative score y_t flips
the sign of every weight. One deliberate difference: pytorch-grad-cam sets an ablated channel
to zero only when the layer's minimum is 0 (a layer after a ReLU) and otherwise to
min − 1e7; we always set it to zero, as the paper does (the two agree after a ReLU).

The ablated channels are items of the engine's batches: one forward pass per batch serves
every target, in fp32 (``score_difference``: the weights are differences of close scores).
Each batch also carries one intact copy, and every drop is taken against that copy's score:
both then come from the same kernels at the same batch size, so the batch-size-dependent
float32 rounding cancels in the difference instead of adding up over the channels (13× less
on the trained embedded model). pytorch-grad-cam takes the drop against the score of a separate
forward pass. After min-max the two agree to 2e-6 on the trained embedded model and to 1e-6 in
float64; on random weights, whose logits are ~0.05, float32 rounding alone moves either of
them by up to 3e-5.
The network is not run "from the layer onward": a model's forward is arbitrary Python
(functional heads, skip connections from earlier layers, DenseNet's concatenations), so there
is no generic rest-of-the-network without tracing it. Each batch therefore runs the full
forward on copies of the input, and a forward hook on the layer replaces its output by
ablated copies of the activation read in the first pass (as pytorch-grad-cam's
``AblationLayer`` does, so every weight compares the same activation); the hook acts on the
same call of the layer as that read (a module called several times per forward is ablated
at its last call), ignores other threads, and is removed in ``finally``. On a layer that is not
NCHW (a Swin stage, a ViT's tokens) the channel is zeroed in the feature-map view and written
back in the layer's own layout (``Layout.from_map``; a ViT's prefix tokens stay intact).
"""
from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Iterator

import torch
from torch import nn

from ..instrument.capture import get_layer
from .base import MethodOutput
from .cam_pipeline import LayerReadout, cam_method, read_layer, to_input_size, weighted_sum

if TYPE_CHECKING:
    from ..engine import Engine, Progress
    from ..model_handle import LoadedModel


@contextlib.contextmanager
def ablating(module_root: nn.Module, layer_name: str, readout: LayerReadout, channels: torch.Tensor,
             call: int) -> Iterator[None]:
    """During one forward pass of this thread, make the ``call``-th call (1-based) of ``layer_name``
    output the readout's activation (K×h×w) intact, then one copy per channel in ``channels`` with
    that channel zeroed: 1 + len(channels) rows, for a batch of as many images."""
    layer = get_layer(module_root, layer_name)
    owner = threading.get_ident()
    calls = 0

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        nonlocal calls
        if threading.get_ident() != owner:
            return None
        calls += 1
        if calls != call:
            return None
        activation = readout.activation
        ablated = activation.to(output.dtype).expand(1 + len(channels), *activation.shape).clone()
        ablated[torch.arange(1, 1 + len(channels), device=ablated.device), channels] = 0
        return readout.layout.from_map(ablated, readout.output.to(output.dtype)).contiguous()

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _ablationcam(model: LoadedModel, x: torch.Tensor, targets: list[int], *, engine: Engine,
                 progress: Progress | None = None, layer: str) -> MethodOutput:
    """Ablation-CAM of ``x`` for each target at ``layer``: T×H×W."""
    readout = read_layer(model, x, targets, layer, engine=engine, gradients=False, section="score_difference")
    target_index = torch.as_tensor(targets, device=readout.logits.device)

    def score_drops(start: int, stop: int) -> torch.Tensor:
        channels = torch.arange(start, stop, device=x.device)
        with torch.no_grad(), ablating(model.module, layer, readout, channels, readout.calls):
            copies = x.unsqueeze(0).repeat(1 + stop - start, 1, 1, 1)  # contiguous: an expanded view is slower
            scores = model.module(copies).float()[:, target_index]
        return scores[:1] - scores[1:]                                                   # b×T

    drops = engine.map_cat(score_drops, readout.activation.shape[0], section="score_difference",
                           key=f"ablationcam:{model.name}:{layer}:{tuple(x.shape)}",
                           progress=progress, message="Ablation-CAM: ablated channels")    # K×T
    weights = drops / readout.logits[target_index]
    return MethodOutput(maps=to_input_size(weighted_sum(weights.T, readout.activation), x), extras={"layer": layer})


ABLATIONCAM = cam_method(
    "ablationcam", "Ablation-CAM", _ablationcam, reference="pytorch-grad-cam AblationCAM",
    description="Feature maps weighted by the relative score drop when each one is zeroed; gradient-free, "
                "one forward pass per channel (Desai & Ramaswamy 2020).")
