"""Logits from a classifier whose forward returns more than a tensor of logits.

Every method reads ``module(x)`` as N×classes logits, but some classifiers return a tuple
(torchvision's GoogLeNet and Inception in training mode, timm's distilled DeiT in distillation
training: its class and distillation heads), a dict, or an output object with ``.logits`` (Hugging Face models; with
``return_dict=False`` a tuple, logits first). ``returning_logits`` makes such a module return
its logits alone.

It does so by giving the module a subclass of its own class whose ``forward`` picks the logits,
as ``torch.nn.utils.parametrize`` injects its parametrized classes. A wrapping module would
prefix every layer name ("model.layer4") and hide the attributes that the token layout reads
(``num_prefix_tokens``, ``output_fmt``); the subclass keeps layer names, attributes, the class
name, parameters and state-dict keys as they were.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import ParameterError


def pick_logits(output: Any) -> torch.Tensor:
    """The logits in a model's output: a tensor as is, the ``logits`` entry of a dict or attribute
    of an output object, the only tensor of a dict, the first element of a tuple or list."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):  # Hugging Face's ModelOutput is a Mapping too
        if "logits" in output:
            return pick_logits(output["logits"])
        tensors = [value for value in output.values() if isinstance(value, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0]
    elif hasattr(output, "logits"):
        return pick_logits(output.logits)
    elif isinstance(output, (tuple, list)) and output:
        return pick_logits(output[0])
    raise ParameterError(f"The model returns a {type(output).__name__} in which no logits can be found; "
                         "make its forward return the N×classes logits, or a dict with a 'logits' entry.")


@functools.lru_cache(maxsize=None)
def _logits_class(cls: type[nn.Module]) -> type[nn.Module]:
    """``cls`` with a forward that returns only the logits (one subclass per class)."""
    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        return pick_logits(cls.forward(self, *args, **kwargs))

    return type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})


def returning_logits(module: nn.Module, probe: torch.Tensor) -> nn.Module:
    """``module`` itself when its no-grad forward of ``probe`` returns a tensor, else the same module
    with a forward that returns its logits (``ParameterError`` when its output holds none).

    Changes the class of ``module`` in place: call it while nobody else holds the module."""
    with torch.no_grad():
        output = module(probe)
    if isinstance(output, torch.Tensor):
        return module
    pick_logits(output)  # fail now, at load time, rather than in the first method
    module.__class__ = _logits_class(type(module))
    return module
