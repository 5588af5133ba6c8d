"""``evaluate``: methods × metrics over a dataset, per-image rows to a CSV and the summary table on stdout.

``--param METHOD.KEY=VALUE`` and ``--metric-param METRIC.KEY=VALUE`` go to one method or metric
(``--param smoothgrad.base.steps=16``: the key is everything after the first dot). Under
``torchrun --nproc_per_node=K -m xai_core evaluate ...`` the images are shared out between the K
processes (``xai_core.evaluation.distributed``); rank 0 writes the CSV and prints the table, the
other ranks print nothing.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

from ..errors import ParameterError
from ..evaluation.sources import GROUND_TRUTHS
from .common import (MAX_BATCH, MAX_IMAGES, DATA_HELP, AddCommand, add_model_args, count, load_model_from,
                     output_path, parse_params)

DEFAULT_BATCH = 32


def _names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise ParameterError(f"{option} expects distinct comma-separated names, got '{text}'.")
    return names


def scoped_params(pairs: list[str], names: list[str], option: str) -> dict[str, dict[str, str]]:
    """``["NAME.KEY=VALUE", ...]`` → ``{NAME: {KEY: VALUE}}`` for each of ``names`` (values stay text)."""
    scoped: dict[str, dict[str, str]] = {name: {} for name in names}
    for key, value in parse_params(pairs).items():
        name, dot, inner = key.partition(".")
        if not dot or not inner:
            raise ParameterError(f"{option} expects NAME.KEY=VALUE, got '{key}={value}'.")
        if name not in scoped:
            raise ParameterError(f"{option} {key}: '{name}' is not one of {', '.join(names)}.")
        scoped[name][inner] = value
    return scoped


def run_evaluate(args: argparse.Namespace) -> dict:
    """Evaluate ``--methods`` with ``--metrics`` on ``--n`` images of ``--data``; rows go to ``--out``."""
    from ..evaluation import distributed, result_json, run_evaluation, write_csv
    from ..methods import get_method
    from ..metrics import METRICS

    methods, metrics = _names(args.methods, "--methods"), _names(args.metrics, "--metrics")
    for name in methods:
        get_method(name)  # fail fast on an unknown name, before loading anything
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ParameterError(f"Unknown metric '{unknown[0]}'; available: {', '.join(METRICS)}.")
    method_params = scoped_params(args.param, methods, "--param")
    metric_params = scoped_params(args.metric_param, metrics, "--metric-param")
    count(args.n, "--n", MAX_IMAGES)
    count(args.batch_size, "--batch-size", MAX_BATCH)
    out = output_path(args.out, ".csv")
    with distributed.session(args.device) as session:
        if not session.is_main:  # torchrun forwards every rank's stdout: the table is rank 0's alone
            sys.stdout = open(os.devnull, "w")
        model = load_model_from(argparse.Namespace(**{**vars(args), "device": str(session.device)}))
        part = run_evaluation(model, args.data, method_params, metric_params, n=args.n,
                              batch_size=args.batch_size, shard=session.shard, ground_truth=args.ground_truth,
                              progress=_progress_line if session.is_main and sys.stderr.isatty() else None)
        result = session.gather(part)
    if result is None:
        return {}
    write_csv(result.rows, out)
    return {"model": model.name, "data": args.data, "n": args.n, "processes": session.world, "out": str(out),
            "summary": result_json(result)["summary"]}


def _progress_line(fraction: float, message: str) -> None:
    print(f"\r{fraction:6.1%}  {message:60.60}", end="" if fraction < 1 else "\n", file=sys.stderr, flush=True)


def summary_table(summary: list[dict[str, Any]]) -> str:
    """The summary rows as an aligned text table: method, metric, mean, 95 % interval, n, direction."""
    def number(value: float | None) -> str:
        return "nan" if value is None or not math.isfinite(value) else f"{value:.4f}"

    header = ("method", "metric", "mean", "95% CI", "n", "better")
    lines = [(r["method"], r["metric"], number(r["mean"]), f"[{number(r['ci_low'])}, {number(r['ci_high'])}]",
              str(r["n"]), "higher" if r["higher_is_better"] else "lower") for r in summary]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:  # names to the left, numbers to the right
        return "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
    return "\n".join(line(row) for row in [header, *lines])


def add_commands(add: AddCommand) -> None:
    """Register ``evaluate``."""
    p = add("evaluate", run_evaluate,
            "score methods with metrics over a dataset: per-image rows to --out, the summary table on stdout")
    add_model_args(p)
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help=f"embedded:SEED (a fresh embedded split), shortcut:SEED / shortcut-train:SEED (with a random / "
                        f"class-agreeing corner cue), or a {DATA_HELP}; ground truth from an "
                        "export's masks or from DIR/boxes.csv (path,x0,y0,x1,y1 in original pixels)")
    p.add_argument("-n", "--n", type=int, required=True,  # -n passes through torchrun, which takes --n for its --nnodes
                   help=f"number of images, at most {MAX_IMAGES:,} (write -n N under torchrun)")
    p.add_argument("--methods", required=True, help="comma-separated registered methods (see `explain --help`)")
    p.add_argument("--metrics", required=True, help="comma-separated registered metrics")
    p.add_argument("--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method parameter; repeat for several")
    p.add_argument("--metric-param", action="append", default=[], metavar="METRIC.KEY=VALUE",
                   help="a metric parameter; repeat for several")
    p.add_argument("--ground-truth", choices=GROUND_TRUTHS, default=GROUND_TRUTHS[0],
                   help="ground truth: the object, or its discriminative part (embedded data and exports)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="images explained together")
    p.add_argument("--out", required=True, help=".csv file: one row per image × method × metric")
