"""State dicts into architectures: reading user checkpoints, and strict, checked loading.

User checkpoints are state dicts for one of the registered architectures, possibly with
another number of classes (read from the final linear layer's weight by the family). They
are always loaded with ``weights_only=True``; wrappers (``{"state_dict": ...}``), the
prefixes DataParallel and ``torch.compile`` add, and old DenseNet key names are accepted.
"""
from __future__ import annotations

import io
import os
import re
from typing import Any, BinaryIO, Mapping, Sequence, Union

import torch
from torch import nn

from ..errors import CheckpointError
from .family import ModelFamily

CheckpointSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO]

_MAX_LISTED_KEYS = 8
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_CLASS_NAME_KEYS = ("class_names", "classes", "categories")
_KEY_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP, torch.compile
# Old DenseNet files name layers "norm.1" where the module is "norm1" (torchvision remaps too).
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def final_linear(module: nn.Module) -> nn.Linear:
    """The classifier's last linear layer, whose outputs are the logits."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1]


def head_weight(family: ModelFamily, name: str, state: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """The final linear layer's weight in ``state`` (classes × features), or None if absent or not 2-D."""
    with torch.device("meta"):  # only the layer names are needed: skip allocating weights
        module = family.build(name)
    last = final_linear(module)
    head = state.get(next(f"{n}.weight" for n, m in module.named_modules() if m is last))
    return head if head is not None and head.ndim == 2 else None


def normalize_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """Strip wrapper prefixes and rename old-format DenseNet keys."""
    for prefix in _KEY_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    renamed = {}
    for key, value in state.items():
        old = _DENSENET_OLD_KEY.match(key)
        renamed[old.group(1) + old.group(2) if old else key] = value
    return renamed


def source_label(checkpoint: CheckpointSource) -> str:
    """A short name for messages and the model card: the file name, or "uploaded ..."."""
    if isinstance(checkpoint, (str, os.PathLike)):
        return os.path.basename(os.fspath(checkpoint))
    if isinstance(checkpoint, (bytes, bytearray)):
        return "uploaded bytes"
    return os.path.basename(str(getattr(checkpoint, "name", ""))) or "uploaded file"


def read_checkpoint(checkpoint: CheckpointSource, label: str) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """The state dict and the class names stored with it, if any."""
    source = io.BytesIO(bytes(checkpoint)) if isinstance(checkpoint, (bytes, bytearray)) else checkpoint
    if hasattr(source, "seek"):
        source.seek(0)
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"Checkpoint file {checkpoint} does not exist.") from None
    except Exception:
        raise CheckpointError(
            f"Checkpoint {label} is not a PyTorch state dict that can be loaded safely (weights_only=True); "
            "save model.state_dict() with torch.save.") from None
    names = None
    if isinstance(obj, Mapping):
        names = next((obj[k] for k in _CLASS_NAME_KEYS if k in obj), None)
        wrapped = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        obj = wrapped if wrapped is not None else obj
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"Checkpoint {label} does not contain a state dict (a mapping of names to tensors).")
    if names is not None and not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"Checkpoint {label} stores class names that are not a list of strings.")
    return normalize_keys(obj), list(names) if names is not None else None


def _listed(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    return shown + (f" and {len(keys) - _MAX_LISTED_KEYS} more" if len(keys) > _MAX_LISTED_KEYS else "")


def _check_compatible(name: str, module: nn.Module, state: Mapping[str, torch.Tensor], label: str) -> None:
    expected = module.state_dict()
    # Files saved before PyTorch 0.4 (several torchvision originals) lack this counter; BatchNorm fills it in.
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and state[k].shape != v.shape]
    # A float tensor may come as fp16/bf16/fp64 (converted to fp32); an integer one (a counter) as any integer type.
    mistyped = [f"{k} {state[k].dtype} vs {v.dtype}".replace("torch.", "") for k, v in expected.items()
                if k in state and not _same_kind(state[k].dtype, v.dtype)]
    problems = [f"{title} ({len(keys)}): {_listed(keys)}" for title, keys in
                (("missing keys", missing), ("unexpected keys", unexpected),
                 ("shape mismatches (checkpoint vs model)", mismatched),
                 ("wrong dtypes (checkpoint vs model)", mistyped)) if keys]
    if problems:
        raise CheckpointError(f"Checkpoint {label} does not fit the {name} architecture: {'; '.join(problems)}.")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise CheckpointError(f"Checkpoint {label} holds NaN or infinite weights (first in {bad}); "
                              "its predictions would be meaningless.")


def _same_kind(given: torch.dtype, wanted: torch.dtype) -> bool:
    if wanted.is_floating_point:
        return given.is_floating_point
    return not given.is_floating_point and not given.is_complex and given != torch.bool


def with_weights(family: ModelFamily, name: str, state: Mapping[str, torch.Tensor], label: str,
                 **arch: int) -> nn.Module:
    """The architecture holding exactly ``state`` (strict), in float32.

    Built on the meta device and filled with ``assign=True``; this relies on the registered
    architectures having no non-persistent buffers (those would stay empty).
    """
    with torch.device("meta"):  # every tensor comes from ``state``: skip the random initialisation
        module = family.build(name, **arch)
    _check_compatible(name, module, state, label)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # fp16/bf16 files
    module.load_state_dict(state, strict=True, assign=True)
    return module
