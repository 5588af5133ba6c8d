"""``dataset-export`` (write embedded-dataset images, masks and labels.csv) and ``dataset-eval``
(accuracy on a fresh embedded split, or on a labelled folder)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ParameterError
from .common import MAX_IMAGES, DATA_HELP, AddCommand, add_model_args, count, load_model_from, number, text_table


def run_dataset_export(args: argparse.Namespace) -> dict:
    """Write ``--n`` samples of seed ``--seed`` under ``--out``."""
    from ..dataset import export

    count(args.n, "--n", MAX_IMAGES)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ParameterError(f"--out must be a folder (images, masks and labels.csv go under it); "
                             f"'{args.out}' is a file.")
    csv_path = export(args.seed, args.n, args.out)
    return {"out": str(args.out), "labels": str(csv_path), "n": args.n, "seed": args.seed}


def run_dataset_eval(args: argparse.Namespace) -> dict:
    """Accuracy on ``--data``, or on ``--n`` freshly generated samples of seed ``--seed``."""
    if args.data is not None:
        if args.seed is not None or args.n is not None:
            raise ParameterError("Give either --data or --seed and --n, not both.")
        from ..folder_dataset import evaluate_folder

        model = load_model_from(args)
        return {"model": model.name, "data": args.data, **evaluate_folder(model, args.data)}
    if args.seed is None or args.n is None:
        raise ParameterError("dataset-eval needs --data DIR, or --seed and --n for a generated split.")
    from ..dataset import evaluate

    count(args.n, "--n", MAX_IMAGES)
    model = load_model_from(args)
    return {"model": model.name, "seed": args.seed, **evaluate(model, args.seed, args.n)}


def describe_export(result: dict) -> str:
    """``run_dataset_export``'s result as one line."""
    return f"wrote {result['n']} images of seed {result['seed']} under {result['out']}; labels: {result['labels']}"


def describe_eval(result: dict) -> str:
    """``run_dataset_eval``'s result: the accuracy, then one row per class."""
    source = result["data"] if "data" in result else f"embedded dataset, seed {result['seed']}"
    return "\n".join([f"{result['model']} on {source}: accuracy {number(result['accuracy'])} "
                      f"over {result['n']} images",
                      text_table(["class", "accuracy"], [[name, value] for name, value in result["per_class"].items()])])


def add_commands(add: AddCommand) -> None:
    """Register ``dataset-export`` and ``dataset-eval``."""
    p = add("dataset-export", run_dataset_export, "write embedded-dataset images, masks and labels.csv")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--n", type=int, required=True, help=f"number of images (at most {MAX_IMAGES:,})")
    p.add_argument("--out", required=True, help="folder to write under (created)")
    p.set_defaults(describe=describe_export)

    p = add("dataset-eval", run_dataset_eval,
            "accuracy on a freshly generated embedded-dataset split (--seed, --n) or on a folder (--data)")
    add_model_args(p)
    p.add_argument("--seed", type=int, help="seed of the generated split")
    p.add_argument("--n", type=int, help=f"images in the generated split (at most {MAX_IMAGES:,})")
    p.add_argument("--data", metavar="DIR", help=DATA_HELP)
    p.set_defaults(describe=describe_eval)
