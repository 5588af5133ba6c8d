"""The pointing-game rate of every registered method on each embedded model, on a fresh split.

    python scripts/pointing_game_family.py --n 64 --seed 20261202 --threads 1

Prints a markdown table (methods × models): the share of images whose map peaks inside the
object's ground-truth mask, with the 95 % bootstrap interval; a method that does not apply to a
model (CAM on a fully connected head, Guided Backprop on a GELU network, attention rollout on a
CNN) shows its refusal instead. Each image is explained for its true label with the method's
default parameters.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from xai_core.errors import ParameterError  # noqa: E402
from xai_core.evaluation.runner import run_evaluation  # noqa: E402
from xai_core.methods import METHODS  # noqa: E402
from xai_core.models import load_model  # noqa: E402
from xai_core.zoo.embedded_family import ARCHITECTURES  # noqa: E402


def cell(model, method: str, args: argparse.Namespace) -> str:
    """``rate [low, high]`` of one method on one model, or why it does not apply."""
    try:
        result = run_evaluation(model, f"embedded:{args.seed}", {method: {}}, {"pointing_game": {}}, n=args.n,
                                batch_size=args.batch_size)
    except ParameterError as refusal:
        return "refuses: " + str(refusal).split(";")[0].split(". ")[0][:48]
    row = result.summary[0]
    return f"{row['mean']:.3f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=20261202, help="a split no model was trained or measured on")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = list(ARCHITECTURES)
    models = {name: load_model(name, device="cpu") for name in names}
    print(f"pointing game, {args.n} images of embedded:{args.seed}, default parameters\n")
    print("| method | " + " | ".join(f"`{n}`" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for method in args.methods.split(","):
        started = time.perf_counter()
        cells = [cell(models[name], method, args) for name in names]
        label = METHODS[method].label.replace("|", "\\|")  # a label like |∂y/∂x| would split the cell
        print(f"| {label} | " + " | ".join(cells) + f" |  <!-- {time.perf_counter() - started:.0f} s -->",
              flush=True)


if __name__ == "__main__":
    main()
