"""``python -m xai_core rig``: train (or reload) the support networks and explain one image with RIG.

Writes an .npz with ``ig`` and ``rig`` (2×H×W, one map per class in the order given),
``logits`` (3×2: rows original, RIG-occluded, IG-occluded; columns the two classes'
pre-softmax logits), plus ``network_maps`` (K+1×2×H×W) and ``region`` (2×H×W).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .errors import ParameterError


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(f"{what} must be comma-separated numbers, got '{text}'.") from None


def run_rig(args: argparse.Namespace) -> dict:
    from . import rig
    from .cli import _load_input, _load_model

    model = _load_model(args)
    classes = model.resolve_targets([c.strip() for c in args.classes.split(",") if c.strip()])
    if len(classes) != 2 or classes[0] == classes[1]:
        raise ParameterError("--classes needs two different classes, e.g. --classes cat,dog.")
    if args.data:
        train, _val = rig.folder_data(model, args.data, classes)
    elif model.name == "embedded":
        train = rig.embedded_data(model, classes, args.seed, args.n)
    else:
        raise ParameterError("--data DIR (an ImageFolder of the two classes) is needed for models other than embedded.")
    supports = rig.train_support_networks(model, train, _numbers(args.alphas, "--alphas"), lr=args.lr,
                                          epochs=args.epochs, seed=args.seed)
    x = _load_input(model, args.image)
    explanation = rig.rig_explain(model, x, supports, tau=args.tau, steps=args.steps)
    logits = rig.occlusion_logits(model, x, classes, explanation.occlusion_region, explanation.ig_scores)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, ig=explanation.ig.astype(np.float32), rig=explanation.rig.astype(np.float32),
                        logits=logits.astype(np.float32), network_maps=explanation.network_maps.astype(np.float32),
                        region=explanation.region, classes=np.array(classes, dtype=np.int64))
    names = [model.categories[c] for c in classes]
    return {"out": str(out), "classes": names, "networks": explanation.network_names,
            "loaded_from_disk": supports.loaded_from_disk, "store": str(supports.directory),
            "area_kept": {k: dict(zip(names, v.tolist())) for k, v in explanation.area.items()},
            "logits": {row: dict(zip(names, values)) for row, values in
                       zip(("original", "rig_occluded", "ig_occluded"), logits.tolist())},
            "final_mse": {f"{a:g}": curve[-1] for a, curve in supports.curves.items()}}


def add_command(command) -> None:
    from .cli import _add_model_args

    p = command("rig", run_rig, "RIG: support regression networks over α values, IG vs RIG and occlusion logits")
    _add_model_args(p)
    p.add_argument("--classes", required=True, help="the two classes, e.g. cat,dog or 6,7")
    p.add_argument("--data", help="ImageFolder directory with one subfolder per class (default: the embedded dataset)")
    p.add_argument("--alphas", default="0,2,4,6,8", help="α values; 0 stands for the classifier itself")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=4e-5)
    p.add_argument("--tau", type=float, default=0.75, help="important = attribution ≥ τ × the map's max")
    p.add_argument("--steps", type=int, default=32, help="IG steps")
    p.add_argument("--n", type=int, default=256, help="embedded-dataset training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image", required=True)
    p.add_argument("--out", required=True)
