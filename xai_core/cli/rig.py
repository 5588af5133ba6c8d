"""``rig``: train (or reload) the support networks and explain one image with RIG, on one model or
on several (``--model`` repeated: the paper reports every table for two architectures).

Writes one .npz per model — ``--out`` itself for one model, else ``--out``'s stem + "_" + the
model's name (numbered when a name repeats) — with ``ig`` and ``rig`` (2×H×W, one map per class
in the order given), ``logits`` (3×2: rows original, RIG-occluded, IG-occluded; columns the two
classes' pre-softmax logits), plus ``network_maps`` (K+1×2×H×W), ``region`` (2×H×W) and
``classes`` (that model's indices). ``--png`` (named like ``--out``) draws, per model, the IG
and RIG maps side by side over the image as that model sees it: one row per class, IG then RIG,
in the app's colours (diverging, each map to its own ±max). The printed summary has, per model,
the logits table (the paper's Table 3) and the accuracy table on train and validation images
(its Table 1). Every default is the library's (``xai_core.rig.defaults``).
"""
from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path

import numpy as np

from .. import render, rig
from ..imageio import load_image
from ..methods.integrated_gradients import STEPS
from ..rig.data import GENERATED_IMAGES
from ..rig.defaults import TRAINING
from ..rig.training import StoreWarning
from .common import DATA_HELP, AddCommand, add_png_arg, load_model_from, number, output_path, png_path, text_table

LOGIT_ROWS = ("original", "rig_occluded", "ig_occluded")
MODEL_OPTIONS = "model_options"  # namespace attribute: [(option, value), ...] in command-line order


class _ModelOption(argparse.Action):
    """Records ``--model``, ``--checkpoint`` and ``--class-names`` in order, so that each of the
    last two applies to the ``--model`` it follows."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, MODEL_OPTIONS, [*(getattr(namespace, MODEL_OPTIONS, None) or []), (self.dest, values)])


def model_specs(args: argparse.Namespace) -> list[argparse.Namespace]:
    """One ``load_model_from`` namespace per ``--model``; a ``--checkpoint`` or ``--class-names``
    belongs to the ``--model`` before it (to the first one when none is before it)."""
    specs: list[argparse.Namespace] = []
    before_any: dict[str, str] = {}
    for option, value in getattr(args, MODEL_OPTIONS, None) or []:
        if option == "model":
            spec = argparse.Namespace(model=value, checkpoint=None, class_names=None, device=args.device)
            specs.append(spec if specs else argparse.Namespace(**{**vars(spec), **before_any}))
        elif specs:
            setattr(specs[-1], option, value)
        else:
            before_any[option] = value
    return specs


def per_model_paths(path: Path, labels: list[str]) -> list[Path]:
    """``path`` for one model; for several, ``path``'s stem + "_" + each label (file-name safe)."""
    if len(labels) == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{re.sub(r'[^A-Za-z0-9_.-]', '_', label)}{path.suffix}") for label in labels]


def _save(path: Path, result: rig.ArchitectureRig) -> None:
    e = result.explanation
    np.savez_compressed(path, ig=e.ig.astype(np.float32), rig=e.rig.astype(np.float32),
                        logits=result.logits.astype(np.float32), network_maps=e.network_maps.astype(np.float32),
                        region=e.region, classes=np.array(e.classes, dtype=np.int64))


def ig_rig_picture(result: rig.ArchitectureRig, image: np.ndarray) -> np.ndarray:
    """The IG and RIG maps of each class over ``image`` (as the model sees it): a row per class,
    coloured as the app does (diverging, each map to its own ±max)."""
    e = result.explanation
    return render.tile([[render.overlay(image, maps[c], render.DIVERGING) for maps in (e.ig, e.rig)]
                        for c in range(len(e.classes))])


def _summary(path: Path, result: rig.ArchitectureRig) -> dict:
    names = [result.model.categories[c] for c in result.explanation.classes]
    supports = result.supports
    return {"model": result.label, "out": str(path), "classes": names, "networks": result.explanation.network_names,
            "data": result.train.source, "validation": result.val.source,
            "loaded_from_disk": supports.loaded_from_disk, "store": str(supports.directory),
            "training_mode": supports.mode,
            "area_kept": {k: dict(zip(names, v.tolist())) for k, v in result.explanation.area.items()},
            "logits": {row: dict(zip(names, values)) for row, values in zip(LOGIT_ROWS, result.logits.tolist())},
            "accuracy": result.accuracy,
            "final_mse": {f"{a:g}": curve[-1] for a, curve in supports.curves.items()}}


def _check_settings(args: argparse.Namespace) -> list[float]:
    """The α values, with every setting that sizes the work checked by the library's own bounds,
    before a model is loaded or a network trained."""
    STEPS.parse("--steps", args.steps)
    for name in ("lr", "epochs"):
        TRAINING[name].parse(f"--{name}", getattr(args, name))
    if not args.data:
        GENERATED_IMAGES.parse("--n", args.n)
    return rig.parse_alphas(args.alphas)


def run_rig(args: argparse.Namespace) -> dict:
    """Support networks for the pair on every ``--model``, IG vs RIG on ``--image``, both tables per model.

    The store's notices (a damaged stored set replaced, a set that could not be stored) are the
    result's ``notices``: ``main`` prints them on stderr, ``--json`` keeps them in the object."""
    alphas = _check_settings(args)
    out, png = output_path(args.out, ".npz"), png_path(args)
    models = [load_model_from(spec) for spec in model_specs(args)]
    image = load_image(args.image)
    with warnings.catch_warnings():  # the same sentences come back as ``notices``: not twice, not as warnings
        warnings.simplefilter("ignore", StoreWarning)
        results = rig.rig_architectures(
            models, [c.strip() for c in args.classes.split(",") if c.strip()], image, folder=args.data,
            seed=args.seed, n=args.n, alphas=alphas, lr=args.lr, epochs=args.epochs, tau=args.tau, steps=args.steps)
    labels = [r.label for r in results]
    summaries = []
    for path, result in zip(per_model_paths(out, labels), results):
        _save(path, result)
        summaries.append(_summary(path, result))
    for picture, summary, result in zip(per_model_paths(png, labels) if png else [], summaries, results):
        shown = result.model.to_display(result.model.preprocess(image))
        picture.write_bytes(render.png_bytes(ig_rig_picture(result, shown)))
        summary["png"] = str(picture)
    return {"image": args.image, "architectures": summaries,
            "notices": [notice for result in results for notice in result.supports.notices]}


def describe(result: dict) -> str:
    """``run_rig``'s result as text: per model its networks and data, both tables, the area kept
    and the files written."""
    blocks = []
    for s in result["architectures"]:
        names = s["classes"]
        networks = (f"loaded from {s['store']}" if s["loaded_from_disk"]
                    else f"trained ({s['training_mode']}), stored in {s['store']}")
        blocks.append("\n".join([
            f"{s['model']}: {' vs '.join(names)} on {result['image']}",
            f"networks {', '.join(s['networks'])}: {networks}; final MSE "
            + (", ".join(f"α={alpha}: {number(mse)}" for alpha, mse in s["final_mse"].items()) or "—"),
            f"train: {s['data']}; validation: {s['validation']}",
            "pre-softmax logits (Table 3):",
            text_table(["", *names], [[row, *values.values()] for row, values in s["logits"].items()]),
            "accuracy in % (Table 1):",
            text_table(list(s["accuracy"][0]), [list(row.values()) for row in s["accuracy"]]),
            "area kept (share of the image):",
            text_table(["", *names], [[kind, *shares.values()] for kind, shares in s["area_kept"].items()]),
            "wrote " + ", ".join(s[key] for key in ("out", "png") if key in s)]))
    return "\n\n".join(blocks)


def add_commands(add: AddCommand) -> None:
    """Register ``rig``."""
    p = add("rig", run_rig, "RIG: support regression networks over α values, IG vs RIG and occlusion logits, "
                            "on one model or on several (--model repeated)")
    p.add_argument("--model", required=True, action=_ModelOption,
                   help="model name (see `models`), e.g. embedded; repeat it to compare architectures")
    p.add_argument("--checkpoint", action=_ModelOption,
                   help="state dict for the architecture of the --model before it (loaded with weights_only=True)")
    p.add_argument("--class-names", dest="class_names", action=_ModelOption,
                   help="comma-separated class names for the --checkpoint of the --model before it")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--classes", required=True, help="the two classes, e.g. cat,dog or 6,7 (by name in every "
                                                    "further model, case-insensitively)")
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
    p.add_argument("--out", required=True, help=".npz file (several models: one per model, suffixed by its name)")
    add_png_arg(p, "per class, the IG and RIG maps side by side over the image (several models: named like --out)")
    p.set_defaults(describe=describe)
