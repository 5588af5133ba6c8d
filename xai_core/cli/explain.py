"""``explain``: any registered method on one image, written as an .npz (and, with ``--png``, as
the picture the app draws: the map over the input as the model sees it).

Registry-generic: ``--method`` is any name of ``xai_core.methods.METHODS`` and ``--param
KEY=VALUE`` any of its parameters (a composed method's base ones as ``base.NAME``), parsed
and range-checked by the method's own ``Param`` specs. ``--help`` lists them all.
"""
from __future__ import annotations

import argparse
import json
import textwrap

import numpy as np

from .. import render
from .common import (AddCommand, add_model_args, add_png_arg, jsonable, library_default, load_input, load_model_from,
                     number, output_path, parse_params, plain, png_path)


def run_explain(args: argparse.Namespace) -> dict:
    """Explain the decision for ``--target`` (default: the prediction); arrays go to ``--out``."""
    from ..methods import explain, get_method

    get_method(args.method)  # fail fast on an unknown name, before loading anything
    out, png = output_path(args.out, ".npz"), png_path(args)  # checked before any work
    model = load_model_from(args)
    x = load_input(model, args.image)
    target = args.target if args.target is not None else model.predict(x.to(model.device), 1)[0]["index"]
    result = explain(model, x, args.method, target, parse_params(args.param))[0]
    arrays = {"input": x.numpy().astype(np.float32), "map": result.map.astype(np.float32),
              "target": np.int64(result.target), "method": np.str_(result.method),
              "params": np.str_(json.dumps(jsonable(result.params)))}
    if result.attribution is not None:
        arrays["attribution"] = result.attribution.astype(np.float32)
    np.savez_compressed(out, **arrays)
    written = {"out": str(out)}
    if png is not None:
        png.write_bytes(render.png_bytes(render.overlay(model.to_display(x), result.map, args.colormap)))
        written["png"] = str(png)
    return {**written, "model": model.name, "method": result.method, "target": result.target,
            "target_name": model.categories[result.target], "params": jsonable(result.params),
            "map_shape": list(result.map.shape), "map_min": float(result.map.min()),
            "map_max": float(result.map.max()), "extras": jsonable(result.extras)}


def describe(result: dict) -> str:
    """``run_explain``'s result as a few lines of text."""
    lines = [f"{result['method']} on {result['model']}, target {result['target_name']} (class {result['target']})",
             f"map {'×'.join(map(str, result['map_shape']))}, min {number(result['map_min'])}, "
             f"max {number(result['map_max'])}"]
    lines += [f"{title}: {plain(result[key])}" for key, title in (("params", "parameters"), ("extras", "extras"))
              if result[key]]
    return "\n".join([*lines, "wrote " + ", ".join(result[key] for key in ("out", "png") if key in result)])


def method_list() -> str:
    """Every registered method with its parameters, for ``explain --help``."""
    from ..methods import METHODS
    from ..methods.catalogue import parameter_lines

    lines = ["methods (--method NAME) and their parameters (--param KEY=VALUE):"]
    for method in METHODS.values():
        lines.append(f"  {method.name} — {method.label}")
        for line in parameter_lines(method) or ["(no parameters)"]:
            lines.extend(textwrap.wrap(line, 100, initial_indent="      ", subsequent_indent="        "))
    return "\n".join(lines)


def method_names() -> str:
    """The registered methods' names in one wrapped paragraph, for the top-level ``--help``."""
    from ..methods import METHODS

    return textwrap.fill("methods of `explain --method` (their parameters: `explain --help`): " + ", ".join(METHODS),
                         100)


def add_commands(add: AddCommand) -> None:
    """Register ``explain``."""
    p = add("explain", run_explain, "explain a decision with any registered method; writes an .npz",
            epilog=method_list(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--image", required=True)
    p.add_argument("--method", required=True, help="a registered method (listed below)")
    p.add_argument("--target", help="class index or name (default: the predicted class)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a method parameter; repeat for several")
    p.add_argument("--out", required=True, help=".npz file: input, map, attribution, target, method, params")
    add_png_arg(p, "the map over the input as the model sees it (grey), each map to its own range, as in the app")
    colormap = library_default(render.overlay, "cmap")
    p.add_argument("--colormap", choices=render.COLORMAPS, default=colormap,
                   help=f"colour map of --png (default {colormap})")
    p.set_defaults(describe=describe)
