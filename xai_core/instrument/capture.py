"""Thread-safe access to a layer's activation in a shared model.

A ``LoadedModel`` is shared by every browser session through the UI's resource cache, so
two threads may run the same module at the same moment. A hook registered by one thread
therefore sees the other thread's forward passes too: every hook here remembers the thread
that registered it and does nothing for any other thread. Hooks are removed in ``finally``
blocks, so an exception (or a cancelled computation) never leaves one behind.

Gradients are taken with ``torch.autograd.grad`` with respect to the captured activation:
no ``.backward()``, no ``.grad`` written into shared parameters, no tensor hooks to clean up.

``Captured.feature_map`` reads the output as N×K×h×w whatever its layout (NCHW, Swin's NHWC,
a ViT's tokens: ``instrument.layout``); the mapping is a view, so the same ``Layout.to_map``
turns the gradient with respect to the output into the gradient with respect to the map.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from ..errors import ParameterError
from .layout import Layout, layer_layout


@dataclass
class Captured:
    """What a ``capture`` saw during the forward passes of its own thread.

    ``output`` is the layer's output of the latest call (a module called several times in one
    forward, like the ReLU shared inside a torchvision ResNet block, keeps its last call).
    """
    module_root: nn.Module = field(repr=False)
    layer_name: str
    output: torch.Tensor | None = None
    calls: int = 0
    _owner: int = field(default_factory=threading.get_ident, repr=False)

    def activation(self) -> torch.Tensor:
        """The layer's output as the layer returned it (its own layout)."""
        if self.output is None:
            raise ParameterError("The chosen layer was not used by the model's forward pass.")
        return self.output

    def layout(self) -> Layout:
        """How the output is laid out; ``ParameterError`` when it is no feature map or token grid."""
        return layer_layout(self.module_root, get_layer(self.module_root, self.layer_name), self.activation(),
                            self.layer_name)

    def feature_map(self) -> torch.Tensor:
        """The output as an N×K×h×w feature map (a view of it, in the graph when not detached)."""
        return self.layout().to_map(self.activation())


def get_layer(module_root: nn.Module, layer_name: str) -> nn.Module:
    try:
        return module_root.get_submodule(layer_name)
    except AttributeError:
        raise ParameterError(f"The model has no layer named '{layer_name}'.") from None


def _as_tensor(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise ParameterError(f"The chosen layer outputs {type(output).__name__}, not a feature map tensor.")


@contextlib.contextmanager
def capture(module_root: nn.Module, layer_name: str, *, detach: bool = False) -> Iterator[Captured]:
    """Record ``layer_name``'s output during forward passes run by the current thread.

    >>> with capture(model.module, "layer4") as seen:
    ...     logits = model.module(x.requires_grad_())
    ...     (grads,) = torch.autograd.grad(logits[:, target].sum(), seen.activation())
    >>> feature_map_grads = seen.layout().to_map(grads)

    With ``detach=False`` the activation stays in the autograd graph (for gradients; the
    input must require grad when the model's parameters do not). Other threads' forward
    passes through the same module are ignored.
    """
    layer = get_layer(module_root, layer_name)
    seen = Captured(module_root, layer_name)

    def hook(_module, _inputs, output):
        if threading.get_ident() != seen._owner:
            return
        output = _as_tensor(output)
        seen.output = output.detach() if detach else output
        seen.calls += 1

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def layers_with_feature_maps(module_root: nn.Module, layer_names: list[str], x: torch.Tensor) -> dict[str, Layout]:
    """The layout of each of ``layer_names`` whose output reads as a feature map (N×K×h×w, NHWC, or
    tokens on a grid), from one no-grad forward of ``x``."""
    owner = threading.get_ident()
    found: dict[str, Layout] = {}
    handles = []

    def hook_for(name: str):
        def hook(layer, _inputs, output):
            if threading.get_ident() == owner and isinstance(output, torch.Tensor) and output.dim() in (3, 4):
                found[name] = layer_layout(module_root, layer, output, name)
        return hook

    try:
        for name in layer_names:
            handles.append(get_layer(module_root, name).register_forward_hook(hook_for(name)))
        with torch.no_grad():
            module_root(x)
    finally:
        for handle in handles:
            handle.remove()
    return found


def hook_count(module_root: nn.Module) -> int:
    """Number of module hooks of any kind on the model (0 after every method; used by tests)."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, kind, {})) for m in module_root.modules() for kind in kinds)
