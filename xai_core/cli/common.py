"""What every subcommand shares: model arguments and loading, input images, ``KEY=VALUE``
parsing, count and output-path checks, library defaults, and conversion of results to JSON.

Subcommand modules import this module, never the one that builds the parser (``entry``).
"""
from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from ..errors import ParameterError
from ..model_handle import LoadedModel

DATA_HELP = ("folder of labelled images: what dataset-export writes (with labels.csv) "
             "or an ImageFolder (one subfolder of images per class, named by class name or index)")
"""The help of every ``--data DIR`` option (the folder is read by ``xai_core.folder_dataset``)."""

Handler = Callable[[argparse.Namespace], Any]


class AddCommand(Protocol):
    """Registers a subcommand: ``add(name, handler, help) -> its parser`` (``entry`` supplies it)."""

    def __call__(self, name: str, handler: Handler, help_text: str,
                 **parser_kwargs: Any) -> argparse.ArgumentParser: ...


def library_default(fn: Callable, parameter: str) -> Any:
    """The default of ``fn``'s ``parameter``: the CLI shows and uses the library's own value."""
    return inspect.signature(fn).parameters[parameter].default


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model, --checkpoint, --class-names and --device."""
    p.add_argument("--model", required=True, help="model name (see `models`), e.g. embedded, resnet18, or "
                   "timm:NAME for any timm model, e.g. timm:convnext_tiny (weights from the local cache)")
    p.add_argument("--checkpoint", help="state dict for the model's architecture (loaded with weights_only=True)")
    p.add_argument("--class-names", help="comma-separated class names for --checkpoint")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def load_model_from(args: argparse.Namespace) -> LoadedModel:
    """The model that ``add_model_args``'s options name."""
    from ..models import load_model

    names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    return load_model(args.model, checkpoint=args.checkpoint, class_names=names, device=args.device)


def load_input(model: LoadedModel, image_path: str) -> torch.Tensor:
    """The image file preprocessed for ``model``: C×H×W on the CPU."""
    from ..imageio import load_image

    return model.preprocess(load_image(image_path))


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` → ``{KEY: VALUE}`` (values stay text: the method's ``Param`` parses them)."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParameterError(f"--param expects KEY=VALUE, got '{pair}'.")
        params[key.strip()] = value.strip()
    return params


def at_least_one(value: int, option: str) -> None:
    """ParameterError unless a count option is ≥ 1."""
    if value < 1:
        raise ParameterError(f"{option} must be at least 1.")


def output_path(path: str, suffix: str | None = None) -> Path:
    """``path``, checked for ``suffix`` (e.g. ".png"), with its folder created."""
    out = Path(path)
    if suffix is not None and out.suffix.lower() != suffix:
        raise ParameterError(f"--out must be a {suffix} file, got '{out.name}'.")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def jsonable(value: Any) -> Any:
    """numpy scalars/arrays (in results and extras) → plain JSON values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
