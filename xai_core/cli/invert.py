"""``invert``: class visualisation from noise, or a deep dream from --from IMAGE.

Writes the final image as a PNG (``--out``); ``--png`` draws the start image (with ``--from``)
beside the final one. The result gives the class score (pre-softmax logit) of the start image
(``score_start``) and of the final image (``score_end``). Every default is ``InversionSettings``'s.
"""
from __future__ import annotations

import argparse

from ..inversion import OPTIMIZERS, PARAMETERIZATIONS, InversionSettings
from .. import render
from .common import AddCommand, add_model_args, add_png_arg, load_input, load_model_from, number, output_path, png_path


def run_invert(args: argparse.Namespace) -> dict:
    """Optimise one image for ``--target`` and save it."""
    from PIL import Image

    from ..inversion import invert

    start_path = getattr(args, "from")
    settings = InversionSettings(steps=args.steps, optimizer=args.optimizer, lr=args.lr, blur_every=args.blur_every,
                                 blur_sigma=args.blur_sigma, l2=args.l2, tv=args.tv, jitter=args.jitter,
                                 parameterization=args.parameterization, frame_every=0, seed=args.seed)
    settings.validate()  # before loading a model
    out = output_path(args.out, ".png")
    png = png_path(args)
    model = load_model_from(args)
    start = load_input(model, start_path) if start_path else None
    result = invert(model, [args.target], settings, start=start)
    Image.fromarray(result.images[0]).save(out)
    written = {"out": str(out)}
    if png is not None:
        shown = ([model.to_display(start)] if start is not None else []) + list(result.images)
        png.write_bytes(render.png_bytes(render.tile([shown])))
        written["png"] = str(png)
    target = result.targets[0]
    return {**written, "model": model.name, "target": target, "target_name": model.categories[target],
            "start": start_path or "noise", "steps": result.steps_done, "seed": args.seed,
            "score_start": float(result.score_start[0]), "score_end": float(result.score_end[0]),
            "probability_end": float(result.probability_end[0])}


def describe(result: dict) -> str:
    """``run_invert``'s result as a few lines of text."""
    return "\n".join([
        f"{result['model']}: inverted {result['target_name']} (class {result['target']}) from {result['start']}, "
        f"{result['steps']} steps, seed {result['seed']}",
        f"class score (logit) {number(result['score_start'])} → {number(result['score_end'])}; "
        f"probability at the end {number(result['probability_end'])}",
        "wrote " + ", ".join(result[key] for key in ("out", "png") if key in result)])


def add_commands(add: AddCommand) -> None:
    """Register ``invert``."""
    d = InversionSettings()
    p = add("invert", run_invert, "model inversion: optimise an image to maximise one class score")
    add_model_args(p)
    p.add_argument("--target", required=True, help="class index or name")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--from", metavar="IMAGE", help="start from this image (deep dream) instead of noise")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the start noise and the jitter")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--blur-every", type=int, default=d.blur_every, help="Gaussian blur every k steps (0: never)")
    p.add_argument("--blur-sigma", type=float, default=d.blur_sigma)
    p.add_argument("--l2", type=float, default=d.l2, help="L2 decay weight")
    p.add_argument("--tv", type=float, default=d.tv, help="total variation weight")
    p.add_argument("--jitter", type=int, default=d.jitter, help="random roll of up to ±N pixels per step")
    p.add_argument("--parameterization", choices=PARAMETERIZATIONS, default=d.parameterization)
    p.add_argument("--out", required=True, help="PNG file for the final image")
    add_png_arg(p, "the start image (with --from) beside the final image")
    p.set_defaults(describe=describe)
