"""``rig``: train (or reload) the support networks and explain one image with RIG.

Writes an .npz with ``ig`` and ``rig`` (2×H×W, one map per class in the order given),
``logits`` (3×2: rows original, RIG-occluded, IG-occluded; columns the two classes'
pre-softmax logits), plus ``network_maps`` (K+1×2×H×W), ``region`` (2×H×W) and ``classes``.
Every default is the library's (``xai_core.rig.defaults``).
"""
from __future__ import annotations

import argparse

import numpy as np

from .. import rig
from .common import DATA_HELP, AddCommand, add_model_args, load_input, load_model_from, output_path


def run_rig(args: argparse.Namespace) -> dict:
    """Support networks for the pair, IG vs RIG on ``--image`` and the occlusion logits."""
    model = load_model_from(args)
    classes = rig.class_pair(model, [c.strip() for c in args.classes.split(",") if c.strip()])
    train = rig.training_data(model, classes, folder=args.data, seed=args.seed, n=args.n)
    supports = rig.train_support_networks(model, train, rig.parse_alphas(args.alphas), lr=args.lr,
                                          epochs=args.epochs, seed=args.seed)
    x = load_input(model, args.image)
    explanation = rig.rig_explain(model, x, supports, tau=args.tau, steps=args.steps)
    logits = rig.occlusion_logits(model, x, classes, explanation.occlusion_region, explanation.ig_scores)
    out = output_path(args.out)
    np.savez_compressed(out, ig=explanation.ig.astype(np.float32), rig=explanation.rig.astype(np.float32),
                        logits=logits.astype(np.float32), network_maps=explanation.network_maps.astype(np.float32),
                        region=explanation.region, classes=np.array(classes, dtype=np.int64))
    names = [model.categories[c] for c in classes]
    return {"out": str(out), "classes": names, "networks": explanation.network_names, "data": train.source,
            "loaded_from_disk": supports.loaded_from_disk, "store": str(supports.directory),
            "training_mode": supports.mode,
            "area_kept": {k: dict(zip(names, v.tolist())) for k, v in explanation.area.items()},
            "logits": {row: dict(zip(names, values)) for row, values in
                       zip(("original", "rig_occluded", "ig_occluded"), logits.tolist())},
            "final_mse": {f"{a:g}": curve[-1] for a, curve in supports.curves.items()}}


def add_commands(add: AddCommand) -> None:
    """Register ``rig``."""
    p = add("rig", run_rig, "RIG: support regression networks over α values, IG vs RIG and occlusion logits")
    add_model_args(p)
    p.add_argument("--classes", required=True, help="the two classes, e.g. cat,dog or 6,7")
    p.add_argument("--data", metavar="DIR", help=DATA_HELP + " (default: generated embedded-dataset images)")
    p.add_argument("--alphas", default=rig.format_alphas(rig.DEFAULT_ALPHAS),
                   help="α values; 0 stands for the classifier itself")
    p.add_argument("--epochs", type=int, default=rig.DEFAULT_EPOCHS)
    p.add_argument("--lr", type=float, default=rig.DEFAULT_LR)
    p.add_argument("--tau", type=float, default=rig.DEFAULT_TAU, help="important = attribution ≥ τ × the map's max")
    p.add_argument("--steps", type=int, default=rig.DEFAULT_STEPS, help="IG steps")
    p.add_argument("--n", type=int, default=rig.DEFAULT_N, help="embedded-dataset training images")
    p.add_argument("--seed", type=int, default=rig.DEFAULT_SEED,
                   help="seed of the embedded-dataset images and of the training batch order")
    p.add_argument("--image", required=True)
    p.add_argument("--out", required=True)
