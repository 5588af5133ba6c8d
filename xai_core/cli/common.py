"""What every subcommand shares: model arguments and loading, input images, ``KEY=VALUE``
parsing, count and output-path checks, library defaults, conversion of results to JSON and
the number format of the human-readable output.

Subcommand modules import this module, never the one that builds the parser (``entry``).
"""
from __future__ import annotations

import argparse
import inspect
import math
import os
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


MAX_IMAGES = 20_000
"""Images one command generates, reads or explains (``dataset-export``, ``dataset-eval``, ``evaluate``):
the embedded dataset is generated on the fly, so a larger count only runs longer (hours)."""
MAX_HELD_IMAGES = 4_096
"""Images held in memory at once (``finetune``'s splits): 4,096 inputs of 224 px are 2.5 GB."""
MAX_BATCH = 4_096
"""Images per batch, micro-batches per step, top classes listed."""
MAX_EPOCHS = 1_000


def count(value: int, option: str, high: int, low: int = 1) -> int:
    """``value`` of a count option that sizes the work; ParameterError, naming the limit, outside
    ``[low, high]`` (checked before any work is done)."""
    if not low <= value <= high:
        raise ParameterError(f"{option} must be at least {low:,} and at most {high:,}; got {value:,}.")
    return value


def finite_options(args: argparse.Namespace) -> None:
    """ParameterError for any float option given as NaN or ±infinity (``float()`` accepts them, no
    setting means them)."""
    for dest, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ParameterError(f"--{dest.replace('_', '-')} must be a finite number; got {value}.")


def output_path(path: str, suffix: str | None = None, option: str = "--out") -> Path:
    """``path`` (given as ``option``), checked for ``suffix`` (e.g. ".png") and for not being a
    folder, with its folder created."""
    out = Path(path)
    if out.is_dir() or path.endswith(("/", os.sep)):
        raise ParameterError(f"{option} must be a file, got the folder '{out}'.")
    if suffix is not None and out.suffix.lower() != suffix:
        raise ParameterError(f"{option} must be a {suffix} file, got '{out.name}'.")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def add_png_arg(p: argparse.ArgumentParser, picture: str) -> None:
    """``--png FILE``: the ``picture`` rendered by ``xai_core.render``."""
    p.add_argument("--png", metavar="FILE", help=f".png file: {picture}")


def png_path(args: argparse.Namespace) -> Path | None:
    """The checked ``--png`` path, or ``None`` without one (checked before any work is done)."""
    return output_path(args.png, ".png", "--png") if args.png else None


def number(value: float | int) -> str:
    """A number as the human-readable output shows it: integers whole, floats to 4 significant digits."""
    if isinstance(value, (int, np.integer)):
        return str(value)
    return "nan" if value is None or not math.isfinite(value) else f"{value:.4g}"


def plain(value: Any) -> str:
    """A JSON-like value as one line of text: numbers by ``number``, lists and dicts flattened."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={plain(v)}" for k, v in value.items()) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value) or "—"
    if isinstance(value, (float, int, np.number)) and not isinstance(value, bool):
        return number(value)
    return str(value)


def text_table(header: list[str], rows: list[list[Any]], indent: str = "  ") -> str:
    """Rows under a header, columns aligned: text to the left, numbers (``number``) to the right."""
    cells = [[c if isinstance(c, str) else number(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    numeric = [any(not isinstance(row[i], str) for row in rows) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return indent + "  ".join(c.rjust(w) if right else c.ljust(w)
                                  for c, w, right in zip(row, widths, numeric)).rstrip()
    return "\n".join(line(row) for row in [header, *cells])


def jsonable(value: Any) -> Any:
    """numpy scalars/arrays (in results and extras) → plain JSON values; a NaN or infinite float
    → ``None`` (JSON has no NaN)."""
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
