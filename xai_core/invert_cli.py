"""``python -m xai_core invert``: class visualisation from noise, or a deep dream from --from IMAGE.

Writes the final image as a PNG; the JSON gives the class score (pre-softmax logit) of the
start image (``score_start``) and of the final image (``score_end``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .errors import ParameterError


def run_invert(args: argparse.Namespace) -> dict:
    from PIL import Image

    from .cli import _load_input, _load_model
    from .inversion import InversionSettings, invert

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ParameterError(f"--out must be a .png file, got '{out.name}'.")
    settings = InversionSettings(steps=args.steps, optimizer=args.optimizer, lr=args.lr, blur_every=args.blur_every,
                                 blur_sigma=args.blur_sigma, l2=args.l2, tv=args.tv, jitter=args.jitter,
                                 parameterization=args.parameterization, frame_every=0, seed=args.seed)
    settings.validate()  # before loading a model
    model = _load_model(args)
    start = _load_input(model, getattr(args, "from")) if getattr(args, "from") else None
    result = invert(model, [args.target], settings, start=start)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(result.images[0]).save(out)
    target = result.targets[0]
    return {"out": str(out), "model": model.name, "target": target, "target_name": model.categories[target],
            "start": getattr(args, "from") or "noise", "steps": result.steps_done, "seed": args.seed,
            "score_start": float(result.score_start[0]), "score_end": float(result.score_end[0]),
            "probability_end": float(result.probability_end[0])}


def add_command(command) -> None:
    from .cli import _add_model_args
    from .inversion import OPTIMIZERS, PARAMETERIZATIONS, InversionSettings

    d = InversionSettings()
    p = command("invert", run_invert, "model inversion: optimise an image to maximise one class score")
    _add_model_args(p)
    p.add_argument("--target", required=True, help="class index or name")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--from", metavar="IMAGE", help="start from this image (deep dream) instead of noise")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the start noise and the jitter")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--blur-every", type=int, default=4, help="Gaussian blur every k steps (0: never)")
    p.add_argument("--blur-sigma", type=float, default=d.blur_sigma)
    p.add_argument("--l2", type=float, default=d.l2, help="L2 decay weight")
    p.add_argument("--tv", type=float, default=d.tv, help="total variation weight")
    p.add_argument("--jitter", type=int, default=d.jitter, help="random roll of up to ±N pixels per step")
    p.add_argument("--parameterization", choices=PARAMETERIZATIONS, default=d.parameterization)
    p.add_argument("--out", required=True, help="PNG file for the final image")
