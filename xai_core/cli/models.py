"""``models`` (the registry and which weights are available offline) and ``predict`` (top-k classes)."""
from __future__ import annotations

import argparse

from ..model_handle import LoadedModel
from .common import MAX_BATCH, AddCommand, add_model_args, count, library_default, load_input, load_model_from


def run_models(args: argparse.Namespace) -> list[dict]:
    """Every registered model with its description and whether its weights are available."""
    from ..models import list_models

    return list_models()


def run_predict(args: argparse.Namespace) -> dict:
    """The top-k predictions for one image."""
    count(args.topk, "--topk", MAX_BATCH)
    model = load_model_from(args)
    x = load_input(model, args.image)
    return {"model": model.name, "image": args.image, "predictions": model.predict(x.to(model.device), args.topk)}


def add_commands(add: AddCommand) -> None:
    """Register ``models`` and ``predict``."""
    add("models", run_models, "list models and whether their weights are available offline")
    p = add("predict", run_predict, "top-k predictions for an image")
    p.add_argument("image")
    add_model_args(p)
    p.add_argument("--topk", type=int, default=library_default(LoadedModel.predict, "topk"))
