"""The one model registry: every family of ``xai_core.zoo`` behind one set of calls.

``load_model`` gives a ``LoadedModel`` with the family's pretrained weights (torchvision
ImageNet weights from torch's hub cache, the embedded model's shipped checkpoint) or with a
user checkpoint's; ``build_random`` gives random weights for tests and benchmarks. Nothing
here knows a family: each answers the questions of ``zoo.family.ModelFamily``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .engine import default_device
from .errors import CheckpointError, ParameterError
from .model_handle import LoadedModel
from .zoo import MODEL_NAMES, family_of, model_names
from .zoo.checkpoints import CheckpointSource, final_linear, read_checkpoint, source_label, with_weights
from .zoo.embedded_family import EMBEDDED
from .zoo.family import ModelFamily
from .zoo.outputs import returning_logits
from .zoo.torchvision_family import TORCHVISION

__all__ = ["EMBEDDED", "MODEL_NAMES", "TORCHVISION", "build_random", "list_models", "load_model",
           "weights_available", "weights_path"]


# ------------------------------------------------------------------ registry facts
def weights_path(name: str) -> Path:
    """Where the pretrained weights of ``name`` are (or would be) stored."""
    return family_of(name).weights_path(name)


def weights_available(name: str) -> bool:
    """True when the weights can be loaded without the network."""
    return weights_path(name).is_file()


def list_models() -> list[dict]:
    """One row per registered model, for the model picker and ``python -m xai_core models``."""
    rows = []
    for name in model_names():
        family = family_of(name)
        path = family.weights_path(name)
        rows.append({"name": name, "weights_available": path.is_file(),
                     "weights_file": path.name, "weights_dir": str(path.parent),
                     "description": family.description(name)})
    return rows


# --------------------------------------------------------------------- handles
def _resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ParameterError(f"Unknown device '{device}'; use cpu or cuda.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("CUDA is not available on this machine; use the cpu device.")
    return resolved


def _handle(family: ModelFamily, name: str, module: nn.Module, categories: Sequence[str],
            weights_source: str, device: torch.device) -> LoadedModel:
    """Wrap a module with its family's preprocessing and CAM layer; a module whose forward returns
    more than logits (a tuple, a dict, an output object) is made to return its logits alone."""
    prep = family.preprocessing(name)
    module = module.eval().to(device)
    module = returning_logits(module, torch.zeros(1, len(prep.mean), prep.input_size, prep.input_size, device=device))
    return LoadedModel(
        name=name, arch=name, module=module, categories=list(categories),
        mean=prep.mean, std=prep.std, input_size=prep.input_size, resize_size=prep.resize_size,
        interpolation=prep.interpolation, weights_source=weights_source,
        default_layer=family.default_layer(name), device=device)


def _default_categories(family: ModelFamily, name: str, num_classes: int) -> list[str]:
    known = family.categories(name)
    return known if len(known) == num_classes else [f"class {i}" for i in range(num_classes)]


def build_random(name: str, num_classes: int | None = None, device: torch.device | str | None = None,
                 seed: int = 0) -> LoadedModel:
    """A randomly initialised model (for tests and benchmarks); the global RNG is untouched."""
    family = family_of(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = family.build(name, num_classes)
    classes = final_linear(module).out_features
    return _handle(family, name, module, _default_categories(family, name, classes), "random",
                   _resolve_device(device))


# ---------------------------------------------------------------------- entry
def _load_checkpoint(family: ModelFamily, name: str, checkpoint: CheckpointSource,
                     class_names: Sequence[str] | None, device: torch.device) -> LoadedModel:
    label = source_label(checkpoint)
    state, stored_names = read_checkpoint(checkpoint, label)
    module = with_weights(family, name, state, label, **family.architecture(name, state))
    classes = final_linear(module).out_features
    if classes < 2:  # the softmax of one logit is always 1: every probability-based method would be flat
        raise CheckpointError(f"Checkpoint {label} has {classes} output unit(s); a classifier needs at least two classes.")
    names = list(class_names) if class_names is not None else stored_names
    if names is None:
        names = _default_categories(family, name, classes)
    if len(names) != classes:
        raise CheckpointError(f"Checkpoint {label} has {classes} output classes but {len(names)} class names were given.")
    return _handle(family, name, module, names, f"checkpoint {label}", device)


def load_model(name: str, checkpoint: CheckpointSource | None = None,
               class_names: Sequence[str] | None = None, device: torch.device | str | None = None,
               allow_download: bool = True) -> LoadedModel:
    """A registered model with pretrained weights, or with the weights of a user checkpoint.

    With a checkpoint, the number of classes is read from the final linear layer's weight and
    class names come from ``class_names``, else from the checkpoint, else the model's own
    names when the count matches, else "class 0", "class 1", ...
    """
    family = family_of(name)
    device = _resolve_device(device)
    if checkpoint is not None:
        return _load_checkpoint(family, name, checkpoint, class_names, device)
    pretrained = family.load_pretrained(name, allow_download)
    model = _handle(family, name, pretrained.module, pretrained.categories, pretrained.source, device)
    if class_names is not None:
        if len(class_names) != model.num_classes:
            raise ParameterError(
                f"{name} has {model.num_classes} classes but {len(class_names)} class names were given.")
        model.categories = list(class_names)
    return model
