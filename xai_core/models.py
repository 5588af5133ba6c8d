"""The one model registry: torchvision ImageNet classifiers and the embedded dataset model.

Pretrained torchvision weights are read from torch's hub cache
(``torch.hub.get_dir()/checkpoints``, which follows ``TORCH_HOME``). The machine the app
runs on may be offline, so a missing file is downloaded only after a quick reachability
probe, and failure becomes a ``WeightsUnavailableError`` telling the user which file to
put where. User checkpoints are state dicts for one of the registered architectures,
possibly with another number of classes; they are always loaded with ``weights_only=True``.
"""
from __future__ import annotations

import io
import os
import re
import socket
import threading
import urllib.error
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence

import torch
from torch import nn

from .engine import default_device
from .errors import CheckpointError, ParameterError, WeightsUnavailableError
from .model_handle import LoadedModel

EMBEDDED = "embedded"


@dataclass(frozen=True)
class TorchvisionSpec:
    label: str
    default_layer: str  # last convolutional feature map (after its activation) for the CAM family


TORCHVISION: dict[str, TorchvisionSpec] = {
    "alexnet": TorchvisionSpec("AlexNet (2012), 5 conv + 3 dense layers", "features.11"),
    "vgg16": TorchvisionSpec("VGG-16 (2014), 13 conv + 3 dense layers", "features.29"),
    "resnet18": TorchvisionSpec("ResNet-18 (2015), residual basic blocks", "layer4"),
    "resnet50": TorchvisionSpec("ResNet-50 (2015), residual bottleneck blocks", "layer4"),
    "densenet121": TorchvisionSpec("DenseNet-121 (2016), densely connected blocks", "features"),
    "mobilenet_v3_large": TorchvisionSpec("MobileNet-V3 Large (2019), mobile inverted residuals",
                                          "features.16"),
    "efficientnet_b0": TorchvisionSpec("EfficientNet-B0 (2019), compound-scaled MBConv", "features.8"),
    "convnext_tiny": TorchvisionSpec("ConvNeXt-Tiny (2022), modernised ResNet", "features.7"),
}
MODEL_NAMES: list[str] = [EMBEDDED, *TORCHVISION]

_PROBE_TIMEOUT_S = 3.0
_MAX_LISTED_KEYS = 8
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_CLASS_NAME_KEYS = ("class_names", "classes", "categories")
_KEY_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP, torch.compile
# Old DenseNet files name layers "norm.1" where the module is "norm1" (torchvision remaps too).
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


# ------------------------------------------------------------------ registry facts
def _check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise ParameterError(f"Unknown model '{name}'; choose one of {', '.join(MODEL_NAMES)}.")


def _weights(name: str):
    from torchvision.models import get_model_weights

    return get_model_weights(name).DEFAULT


def weights_path(name: str) -> Path:
    """Where the pretrained weights of ``name`` are (or would be) stored."""
    _check_name(name)
    if name == EMBEDDED:
        from .embedded import CHECKPOINT

        return Path(CHECKPOINT)
    filename = os.path.basename(urllib.parse.urlparse(_weights(name).url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def weights_available(name: str) -> bool:
    """True when the weights can be loaded without the network."""
    return weights_path(name).is_file()


def _description(name: str) -> str:
    if name == EMBEDDED:
        return "Compact CNN trained on the procedural shapes dataset (ground-truth masks available)"
    meta = _weights(name).meta
    top1 = meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    accuracy = f", ImageNet top-1 {top1:.1f}%" if top1 is not None else ""
    return f"{TORCHVISION[name].label}; {meta['num_params'] / 1e6:.1f} M parameters{accuracy}"


def list_models() -> list[dict]:
    """One row per registered model, for the model picker and ``python -m xai_core models``."""
    rows = []
    for name in MODEL_NAMES:
        path = weights_path(name)
        rows.append({"name": name, "weights_available": path.is_file(),
                     "weights_file": path.name, "weights_dir": str(path.parent),
                     "description": _description(name)})
    return rows


# --------------------------------------------------------------------- building
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


def _build_torchvision(name: str, num_classes: int) -> nn.Module:
    from torchvision.models import get_model

    return get_model(name, weights=None, num_classes=num_classes)


def _torchvision_handle(name: str, module: nn.Module, categories: Sequence[str], weights_source: str,
                        device: torch.device) -> LoadedModel:
    """Wrap a torchvision module with its weights' preprocessing and CAM layer."""
    transforms = _weights(name).transforms()
    return LoadedModel(
        name=name, arch=name, module=module.eval().to(device), categories=list(categories),
        mean=tuple(transforms.mean), std=tuple(transforms.std),
        input_size=int(transforms.crop_size[0]), resize_size=int(transforms.resize_size[0]),
        interpolation=transforms.interpolation.value,
        weights_source=weights_source, default_layer=TORCHVISION[name].default_layer,
        device=device)


def _embedded_handle(module: nn.Module, categories: Sequence[str], weights_source: str,
                     device: torch.device) -> LoadedModel:
    from .dataset import IMAGE_SIZE, MEAN, STD
    from .embedded import DEFAULT_LAYER

    return LoadedModel(
        name=EMBEDDED, arch=EMBEDDED, module=module.eval().to(device), categories=list(categories),
        mean=tuple(MEAN), std=tuple(STD), input_size=IMAGE_SIZE, resize_size=IMAGE_SIZE,
        weights_source=weights_source, default_layer=DEFAULT_LAYER, device=device)


def _new_module(name: str, num_classes: int | None = None, **arch: int) -> nn.Module:
    if name == EMBEDDED:
        from .dataset import CLASSES
        from .embedded import EmbeddedNet

        return EmbeddedNet(num_classes=num_classes or len(CLASSES), **arch)
    return _build_torchvision(name, num_classes or len(_weights(name).meta["categories"]))


def _default_categories(name: str, num_classes: int) -> list[str]:
    if name == EMBEDDED:
        from .dataset import CLASSES
        known = list(CLASSES)
    else:
        known = list(_weights(name).meta["categories"])
    return known if len(known) == num_classes else [f"class {i}" for i in range(num_classes)]


def _handle(name: str, module: nn.Module, categories: Sequence[str], weights_source: str,
            device: torch.device) -> LoadedModel:
    if name == EMBEDDED:
        return _embedded_handle(module, categories, weights_source, device)
    return _torchvision_handle(name, module, categories, weights_source, device)


def build_random(name: str, num_classes: int | None = None, device: torch.device | str | None = None,
                 seed: int = 0) -> LoadedModel:
    """A randomly initialised model (for tests and benchmarks); the global RNG is untouched."""
    _check_name(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = _new_module(name, num_classes)
    classes = _final_linear(module).out_features
    return _handle(name, module, _default_categories(name, classes), "random",
                 _resolve_device(device))


# ---------------------------------------------------------------------- weights
def _reachable(url: str) -> bool:
    """Fast offline check: can we open a TCP connection to the download host at all?

    Runs in a daemon thread because name resolution has no timeout of its own and can
    stall for tens of seconds on a machine without a network.
    """
    parsed = urllib.parse.urlparse(url)
    connected: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((parsed.hostname, parsed.port or 443), timeout=_PROBE_TIMEOUT_S).close()
            connected.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(_PROBE_TIMEOUT_S)
    return bool(connected)


def _download(url: str, path: Path) -> None:
    if not _reachable(url):
        raise urllib.error.URLError(f"{urllib.parse.urlparse(url).hostname} is unreachable")
    path.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(path.name)
    torch.hub.download_url_to_file(url, str(path), hash_prefix=match.group(1) if match else None)


def _pretrained_state_dict(name: str, allow_download: bool) -> dict[str, torch.Tensor]:
    weights = _weights(name)
    path = weights_path(name)
    advice = (f"Weights for {name} are not available offline: download {path.name} from "
              f"{weights.url} and put it in {path.parent}.")
    if not path.is_file():
        if not allow_download:
            raise WeightsUnavailableError(advice)
        try:
            _download(weights.url, path)
        except (OSError, RuntimeError, urllib.error.URLError):  # network, disk, or hash mismatch
            raise WeightsUnavailableError(advice) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsUnavailableError(
            f"The weights file {path} for {name} is corrupt ({type(err).__name__}); delete it and "
            f"download {path.name} again from {weights.url}.") from None
    return _normalize_keys(state)


def _load_pretrained(name: str, device: torch.device, allow_download: bool) -> LoadedModel:
    if name == EMBEDDED:
        from .dataset import CLASSES
        from .embedded import load_embedded

        path = weights_path(EMBEDDED)
        if not path.is_file():
            raise WeightsUnavailableError(
                f"The embedded model's checkpoint {path} is missing; run scripts/train_embedded.py.")
        return _embedded_handle(load_embedded(device, path), CLASSES, f"checkpoint {path.name}", device)
    module = _with_weights(name, _pretrained_state_dict(name, allow_download), weights_path(name).name)
    return _torchvision_handle(name, module, _weights(name).meta["categories"],
                               f"torchvision {_weights(name)}", device)


# ------------------------------------------------------------------ checkpoints
def _final_linear(module: nn.Module) -> nn.Linear:
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1]


def _final_linear_key(module: nn.Module) -> str:
    last = _final_linear(module)
    return next(f"{n}.weight" for n, m in module.named_modules() if m is last)


def _normalize_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """Strip wrapper prefixes and rename old-format DenseNet keys."""
    for prefix in _KEY_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    renamed = {}
    for key, value in state.items():
        old = _DENSENET_OLD_KEY.match(key)
        renamed[old.group(1) + old.group(2) if old else key] = value
    return renamed


def _source_label(checkpoint: str | os.PathLike | bytes | BinaryIO) -> str:
    if isinstance(checkpoint, (str, os.PathLike)):
        return os.path.basename(os.fspath(checkpoint))
    if isinstance(checkpoint, (bytes, bytearray)):
        return "uploaded bytes"
    return os.path.basename(str(getattr(checkpoint, "name", ""))) or "uploaded file"


def _read_checkpoint(checkpoint, label: str) -> tuple[dict[str, torch.Tensor], list[str] | None]:
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
    return _normalize_keys(obj), list(names) if names is not None else None


def _listed(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    return shown + (f" and {len(keys) - _MAX_LISTED_KEYS} more" if len(keys) > _MAX_LISTED_KEYS else "")


def _architecture_from(name: str, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Constructor arguments read from the head's weight: classes, and the embedded net's width."""
    with torch.device("meta"):  # only the layer names are needed: skip allocating weights
        head_key = _final_linear_key(_new_module(name))
    head = state.get(head_key)
    if head is None or head.ndim != 2:
        return {}  # the compatibility check will report the missing head
    arch = {"num_classes": head.shape[0]}
    if name == EMBEDDED:
        arch["width"] = head.shape[1] // 4  # EmbeddedNet's head sees 4 × width channels
    return arch


def _check_compatible(name: str, module: nn.Module, state: Mapping[str, torch.Tensor], label: str) -> None:
    expected = module.state_dict()
    # Files saved before PyTorch 0.4 (several torchvision originals) lack this counter; BatchNorm fills it in.
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and state[k].shape != v.shape]
    problems = [f"{title} ({len(keys)}): {_listed(keys)}" for title, keys in
                (("missing keys", missing), ("unexpected keys", unexpected),
                 ("shape mismatches (checkpoint vs model)", mismatched)) if keys]
    if problems:
        raise CheckpointError(f"Checkpoint {label} does not fit the {name} architecture: {'; '.join(problems)}.")


def _with_weights(name: str, state: Mapping[str, torch.Tensor], label: str, **arch: int) -> nn.Module:
    """The architecture holding exactly ``state`` (strict), in float32.

    Built on the meta device and filled with ``assign=True``; this relies on the registered
    architectures having no non-persistent buffers (those would stay empty).
    """
    with torch.device("meta"):  # every tensor comes from ``state``: skip the random initialisation
        module = _new_module(name, **arch)
    _check_compatible(name, module, state, label)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # fp16/bf16 files
    module.load_state_dict(state, strict=True, assign=True)
    return module


def _load_checkpoint(name: str, checkpoint, class_names: Sequence[str] | None,
                     device: torch.device) -> LoadedModel:
    label = _source_label(checkpoint)
    state, stored_names = _read_checkpoint(checkpoint, label)
    module = _with_weights(name, state, label, **_architecture_from(name, state))
    classes = _final_linear(module).out_features
    if classes < 2:  # the softmax of one logit is always 1: every probability-based method would be flat
        raise CheckpointError(f"Checkpoint {label} has {classes} output unit(s); a classifier needs at least two classes.")
    names = list(class_names) if class_names is not None else stored_names
    if names is None:
        names = _default_categories(name, classes)
    if len(names) != classes:
        raise CheckpointError(f"Checkpoint {label} has {classes} output classes but {len(names)} class names were given.")
    return _handle(name, module, names, f"checkpoint {label}", device)


# ---------------------------------------------------------------------- entry
def load_model(name: str, checkpoint: str | os.PathLike | bytes | BinaryIO | None = None,
               class_names: Sequence[str] | None = None, device: torch.device | str | None = None,
               allow_download: bool = True) -> LoadedModel:
    """A registered model with pretrained weights, or with the weights of a user checkpoint.

    With a checkpoint, the number of classes is read from the final linear layer's weight and
    class names come from ``class_names``, else from the checkpoint, else the model's own
    names when the count matches, else "class 0", "class 1", ...
    """
    _check_name(name)
    device = _resolve_device(device)
    if checkpoint is not None:
        return _load_checkpoint(name, checkpoint, class_names, device)
    model = _load_pretrained(name, device, allow_download)
    if class_names is not None:
        if len(class_names) != model.num_classes:
            raise ParameterError(
                f"{name} has {model.num_classes} classes but {len(class_names)} class names were given.")
        model.categories = list(class_names)
    return model
