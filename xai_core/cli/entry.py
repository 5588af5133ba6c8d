"""The parser and ``main``: one subcommand module per group, each registering its commands.

Each subcommand is a handler ``run_NAME(args) -> dict | list``; the result is printed as one
JSON object with ``--json`` (NaN written as null: the output stays valid JSON), else as short
human-readable text: the subcommand's own ``describe(result) -> str`` where it sets one with
``set_defaults(describe=...)``, else a generic rendering of the result's shape, after the result's
``notices`` (if any), one line each on stderr. Any error a user can cause (a float option given as
NaN or infinity included) ends with exit code 2 and one line on stderr (set ``XAI_DEBUG=1`` for the
traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..errors import XAIError
from . import dataset, evaluate, explain, finetune, invert, models, rig
from .common import Handler, finite_options, jsonable

ERROR_EXIT = 2
GROUPS = (models, dataset, explain, evaluate, finetune, rig, invert)  # the order of ``--help``


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m xai_core`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m xai_core", description="XAI Lab core from the command line.",
                                     epilog=explain.method_names())
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Handler, help_text: str, **parser_kwargs: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, **parser_kwargs)
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        p.set_defaults(handler=handler)
        return p

    for group in GROUPS:
        group.add_commands(add)
    return parser


def _print_human(args: argparse.Namespace, result: Any) -> None:
    if getattr(args, "describe", None) is not None:
        print(args.describe(result))
    elif isinstance(result, list):
        for row in result:
            print("  ".join(f"{k}={v}" for k, v in row.items() if not isinstance(v, (list, dict))))
    elif isinstance(result, dict) and "predictions" in result:
        for p in result["predictions"]:
            print(f"{p['probability']:7.2%}  {p['index']:5d}  {p['name']}")
    elif isinstance(result, dict) and "summary" in result:
        print(evaluate.summary_table(result["summary"]))
    else:
        print(json.dumps(jsonable(result), indent=2))


def _print_notices(result: Any) -> None:
    """A result's ``notices`` (what went wrong on the side without stopping the work), one line each."""
    for notice in result.get("notices", []) if isinstance(result, dict) else []:
        print(f"notice: {notice}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; 0 on success, 2 (one line on stderr) on an error the user can fix."""
    args = build_parser().parse_args(argv)
    try:
        finite_options(args)
        result = args.handler(args)
    except (XAIError, OSError, ValueError) as err:
        if os.environ.get("XAI_DEBUG"):
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return ERROR_EXIT
    try:
        if args.json:
            print(json.dumps(jsonable(result), allow_nan=False))
        else:
            _print_notices(result)
            _print_human(args, result)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader (`| head`) stopped early: not an error; silence the final flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
