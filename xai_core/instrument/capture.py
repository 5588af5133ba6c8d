"""Thread-safe access to a layer's activation in a shared model.

A ``LoadedModel`` is shared by every browser session through the UI's resource cache, so
two threads may run the same module at the same moment. A hook registered by one thread
therefore sees the other thread's forward passes too: every hook here remembers the thread
that registered it and does nothing for any other thread. Hooks are removed in ``finally``
blocks, so an exception (or a cancelled computation) never leaves one behind.

Gradients are taken with ``torch.autograd.grad`` with respect to the captured activation:
no ``.backward()``, no ``.grad`` written into shared parameters, no tensor hooks to clean up.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from ..errors import ParameterError


@dataclass
class Captured:
    """What a ``capture`` saw during the forward passes of its own thread.

    ``output`` is the layer's output of the latest call (a module called several times in one
    forward, like the ReLU shared inside a torchvision ResNet block, keeps its last call).
    """
    output: torch.Tensor | None = None
    calls: int = 0
    _owner: int = field(default_factory=threading.get_ident, repr=False)

    def activation(self) -> torch.Tensor:
        if self.output is None:
            raise ParameterError("The chosen layer was not used by the model's forward pass.")
        return self.output

    def gradients(self, scores: torch.Tensor, *, retain_graph: bool = False) -> torch.Tensor:
        """∂(scores.sum())/∂activation, with the same shape as the activation."""
        (grad,) = torch.autograd.grad(scores.sum(), self.activation(), retain_graph=retain_graph)
        return grad


def get_layer(module_root: nn.Module, layer_name: str) -> nn.Module:
    try:
        return module_root.get_submodule(layer_name)
    except AttributeError:
        raise ParameterError(f"The model has no layer named '{layer_name}'.") from None


def feature_map_check(activation: torch.Tensor, layer: str) -> None:
    """ParameterError unless ``activation`` is an N×K×h×w feature map."""
    if activation.dim() != 4:
        raise ParameterError(f"Layer '{layer}' outputs shape {tuple(activation.shape)}, not a feature map; "
                             "choose a convolutional layer.")


def _as_tensor(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise ParameterError(f"The chosen layer outputs {type(output).__name__}, not a feature map tensor.")


@contextlib.contextmanager
def capture(module_root: nn.Module, layer_name: str, *, detach: bool = False) -> Iterator[Captured]:
    """Record ``layer_name``'s output during forward passes run by the current thread.

    >>> with capture(model.module, "layer4") as seen:
    ...     logits = model.module(x.requires_grad_())
    ...     grads = seen.gradients(logits[:, target])

    With ``detach=False`` the activation stays in the autograd graph (for gradients; the
    input must require grad when the model's parameters do not). Other threads' forward
    passes through the same module are ignored.
    """
    layer = get_layer(module_root, layer_name)
    seen = Captured()

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


def layers_with_feature_maps(module_root: nn.Module, layer_names: list[str], x: torch.Tensor) -> set[str]:
    """Which of ``layer_names`` output a 4-D tensor (a feature map) in one no-grad forward of ``x``."""
    owner = threading.get_ident()
    found: set[str] = set()
    handles = []

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            if threading.get_ident() == owner and isinstance(output, torch.Tensor) and output.dim() == 4:
                found.add(name)
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
