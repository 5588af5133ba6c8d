"""Does a saliency loss teach the shortcut model to look at the object? Every loss form, several seeds.

    python scripts/finetune_study.py --seeds 0 1 2 --epochs 10 --threads 1

Starts each run from the shipped shortcut model (``xai_core/assets/shortcut.pt``, which follows a
class-coloured corner cue), fine-tunes a copy on ``shortcut-train`` images (the cue agrees with the
label in 95 % of them) with the same budget for every loss form, and scores the result on the
decorrelated ``shortcut`` split (random cue): accuracy, Grad-CAM MAGTR and MANGTR on the object.
Prints a markdown table, mean ± standard deviation over the seeds (the seed orders the training
images); a run that diverges (NaN) is counted and left out of the means.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from xai_core import shortcut_dataset  # noqa: E402
from xai_core.cli.finetune import load_split  # noqa: E402
from xai_core.engine import Engine  # noqa: E402
from xai_core.finetune import LOSS_FORMS, FinetuneConfig, finetune  # noqa: E402
from xai_core.finetune.training import evaluate_split, trainable_copy  # noqa: E402
from xai_core.models import load_model  # noqa: E402

SCORES = ("accuracy", "magtr", "mangtr")


def spread(values: list[float]) -> str:
    """``mean ± sd`` of the finite values, with the number of diverged runs when there are some."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "diverged"
    text = f"{statistics.mean(finite):.3f} ± {statistics.stdev(finite) if len(finite) > 1 else 0.0:.3f}"
    return text + (f" ({len(values) - len(finite)} diverged)" if len(finite) < len(values) else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n", type=int, default=512, help="training images (shortcut-train:21)")
    parser.add_argument("--val-n", type=int, default=256, help="decorrelated validation images (shortcut:22)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--accumulate", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--forms", nargs="+", default=list(LOSS_FORMS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("embedded", checkpoint=shortcut_dataset.CHECKPOINT, device="cpu")
    train = load_split(model, "shortcut-train:21", args.n, "--n")
    val = load_split(model, "shortcut:22", args.val_n, "--val-n")
    started = time.perf_counter()
    scoring = FinetuneConfig(layer=model.default_layer)
    before = evaluate_split(trainable_copy(model, scoring, model.device), val, scoring, Engine(model.device))
    print(f"{args.epochs} epochs × {args.n} images, micro-batch {args.micro_batch} × {args.accumulate}, Adam lr "
          f"{args.lr:g}, seeds {args.seeds}; scores on {args.val_n} decorrelated images (shortcut:22)\n")
    print("| loss | accuracy | MAGTR (object) | MANGTR (outside) | s / epoch |")
    print("|---|---|---|---|---|")
    print(f"| start (shortcut model) | {before.accuracy:.3f} | {before.magtr:.3f} | {before.mangtr:.3f} | |")
    for form in args.forms:
        finals, seconds = {s: [] for s in SCORES}, []
        for seed in args.seeds:
            config = FinetuneConfig(layer=model.default_layer, form=form, lr=args.lr, micro_batch=args.micro_batch,
                                    accumulate=args.accumulate, seed=seed)
            result = finetune(model, train, config, epochs=args.epochs, val=val)
            last = [r for r in result.records if r.split == "val"][-1]
            for score in SCORES:
                finals[score].append(getattr(last, score))
            seconds += [r.seconds for r in result.records if r.split == "train"]
        print(f"| `{form}` | " + " | ".join(spread(finals[s]) for s in SCORES)
              + f" | {statistics.mean(seconds):.1f} |", flush=True)
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
