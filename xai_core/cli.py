"""Command line: ``python -m xai_core SUBCOMMAND ...``.

Each subcommand is a function ``run_NAME(args) -> dict | list`` plus its parser in
``_build_parser``; the result is printed as one JSON object with ``--json``, else as short
human-readable text. Any error a user can cause ends with exit code 2 and one line on
stderr (set ``XAI_DEBUG=1`` for the traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import invert_cli, rig_cli
from .errors import ParameterError, XAIError

_ERROR_EXIT = 2


# --------------------------------------------------------------------- helpers
def _add_model_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--model", required=required, default=None if required else "embedded",
                   help="model name (see `models`), e.g. embedded, resnet18")
    p.add_argument("--checkpoint", help="state dict for the model's architecture (loaded with weights_only=True)")
    p.add_argument("--class-names", help="comma-separated class names for --checkpoint")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def _load_model(args: argparse.Namespace):
    from .models import load_model

    names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    return load_model(args.model, checkpoint=args.checkpoint, class_names=names, device=args.device)


def _load_input(model, image_path: str):
    from .imageio import load_image

    return model.preprocess(load_image(image_path))


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParameterError(f"--param expects KEY=VALUE, got '{pair}'.")
        params[key.strip()] = value.strip()
    return params


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays in extras -> plain JSON values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# ----------------------------------------------------------------- subcommands
def run_models(args: argparse.Namespace) -> list[dict]:
    from .models import list_models

    return list_models()


def run_predict(args: argparse.Namespace) -> dict:
    model = _load_model(args)
    x = _load_input(model, args.image)
    if args.topk < 1:
        raise ParameterError("--topk must be at least 1.")
    return {"model": model.name, "image": args.image, "predictions": model.predict(x.to(model.device), args.topk)}


def run_dataset_export(args: argparse.Namespace) -> dict:
    from .dataset import export

    if args.n < 1:
        raise ParameterError("--n must be at least 1.")
    csv_path = export(args.seed, args.n, args.out)
    return {"out": str(args.out), "labels": str(csv_path), "n": args.n, "seed": args.seed}


def run_dataset_eval(args: argparse.Namespace) -> dict:
    from .dataset import evaluate

    if args.n < 1:
        raise ParameterError("--n must be at least 1.")
    model = _load_model(args)
    return {"model": model.name, "seed": args.seed, **evaluate(model, args.seed, args.n)}


def run_explain(args: argparse.Namespace) -> dict:
    from .methods import explain, get_method

    get_method(args.method)  # fail fast on an unknown name, before loading anything
    model = _load_model(args)
    x = _load_input(model, args.image)
    target = args.target if args.target is not None else model.predict(x.to(model.device), 1)[0]["index"]
    result = explain(model, x, args.method, target, _parse_params(args.param))[0]
    arrays = {"input": x.numpy().astype(np.float32), "map": result.map.astype(np.float32),
              "target": np.int64(result.target), "method": np.str_(result.method),
              "params": np.str_(json.dumps(_jsonable(result.params)))}
    if result.attribution is not None:
        arrays["attribution"] = result.attribution.astype(np.float32)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return {"out": str(out), "method": result.method, "target": result.target,
            "target_name": model.categories[result.target], "params": _jsonable(result.params),
            "map_shape": list(result.map.shape), "extras": _jsonable(result.extras)}


# --------------------------------------------------------------------- parser
def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m xai_core", description="XAI Lab core from the command line.")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, fn: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        p.set_defaults(func=fn)
        return p

    command("models", run_models, "list models and whether their weights are available offline")

    p = command("predict", run_predict, "top-k predictions for an image")
    p.add_argument("image")
    _add_model_args(p)
    p.add_argument("--topk", type=int, default=5)

    p = command("dataset-export", run_dataset_export, "write embedded-dataset images, masks and labels.csv")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True)

    p = command("dataset-eval", run_dataset_eval, "accuracy on a freshly generated embedded-dataset split")
    _add_model_args(p)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--n", type=int, required=True)

    p = command("explain", run_explain, "explain a decision with any registered method; writes an .npz")
    _add_model_args(p)
    p.add_argument("--image", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--target", help="class index or name (default: the predicted class)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True)

    for feature_cli in (rig_cli, invert_cli):  # subcommands that live beside their feature
        feature_cli.add_command(command)
    return parser


# ----------------------------------------------------------------------- main
def _print_human(result: Any) -> None:
    if isinstance(result, list):
        for row in result:
            print("  ".join(f"{k}={v}" for k, v in row.items() if not isinstance(v, (list, dict))))
    elif isinstance(result, dict) and "predictions" in result:
        for p in result["predictions"]:
            print(f"{p['probability']:7.2%}  {p['index']:5d}  {p['name']}")
    else:
        print(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (XAIError, OSError, ValueError) as err:
        if os.environ.get("XAI_DEBUG"):
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return _ERROR_EXIT
    if args.json:
        print(json.dumps(_jsonable(result)))
    else:
        _print_human(result)
    return 0
