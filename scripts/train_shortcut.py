"""Train the small ``embedded`` CNN with plain cross-entropy on the shortcut dataset, and show that it
takes the shortcut: accuracy drops where the cue is decorrelated, and Grad-CAM leaves the object.

    python scripts/train_shortcut.py                                    # ~1 minute on one core
    python scripts/train_shortcut.py --out xai_core/assets/shortcut.pt  # the shipped shortcut model

Training images are ``shortcut-train`` (``make_shortcut_sample(TRAIN_SEED, i)``, the cue naming the
class in 95 % of them; ``--train-agreement 0.125`` trains the control, whose cue carries no
information). Both evaluation splits use the same ``HELD_OUT_SEED`` images, so they differ only by
their cue: the correlated one (95 %) and the decorrelated one (cue independent of the label,
``shortcut:SEED``). Printed per split: accuracy, the share of predictions that follow the cue where
it disagrees with the label, and the mean Grad-CAM MAGTR (``xai_core.metrics``, region = mask) for
the true class on the object mask and on the cue's mask. With ``--out``, writes the checkpoint
(``embedded.save_embedded`` format, loaded by ``load_model("embedded", checkpoint=PATH)``) and
``<stem>_metrics.json`` beside it.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from train_embedded import accuracy, normalise  # noqa: E402  (this folder is on sys.path)
from xai_core import dataset, shortcut_dataset  # noqa: E402
from xai_core.embedded import DEFAULT_LAYER, EmbeddedNet, save_embedded  # noqa: E402
from xai_core.methods import explain_batch  # noqa: E402
from xai_core.metrics import GroundTruth, compute  # noqa: E402
from xai_core.model_handle import LoadedModel  # noqa: E402

TRAIN_SEED = 11
HELD_OUT_SEED = 12


def generate(seed: int, n: int, agreement: float) -> dict[str, torch.Tensor]:
    """uint8 N×3×H×W images, labels, cue labels, object and cue masks of one shortcut split."""
    batch = shortcut_dataset.shortcut_samples(seed, n, agreement)
    return {"images": torch.from_numpy(np.stack([s.image for s in batch])).permute(0, 3, 1, 2),
            "labels": torch.tensor([s.label for s in batch]),
            "cue_labels": torch.tensor([s.cue_label for s in batch]),
            "objects": torch.from_numpy(np.stack([s.object_mask for s in batch])),
            "cues": torch.from_numpy(np.stack([s.cue_mask for s in batch]))}


def gradcam_magtr(model: LoadedModel, split: dict[str, torch.Tensor], n: int) -> tuple[float, float]:
    """Mean Grad-CAM MAGTR for the true class of the first ``n`` images: on the object, on the cue."""
    xs = normalise(split["images"][:n])
    targets = [[int(label)] for label in split["labels"][:n]]
    maps = torch.stack([torch.from_numpy(row[0].map) for row in explain_batch(model, xs, "gradcam", targets)])
    means = []
    for region in ("objects", "cues"):
        scores = compute("magtr", maps, GroundTruth(masks=split[region][:n]), params={"region": "mask"}).scores
        means.append(float(scores.nanmean()))
    return means[0], means[1]


@torch.no_grad()
def cue_following(model: torch.nn.Module, split: dict[str, torch.Tensor]) -> float:
    """Share of the images whose cue disagrees with the label on which the model predicts the cue's class."""
    disagree = split["cue_labels"] != split["labels"]
    predicted = model(normalise(split["images"][disagree])).argmax(1)
    return float((predicted == split["cue_labels"][disagree]).float().mean())


def main() -> None:
    """Parse the options, train, report both splits, optionally write the checkpoint and metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8, help="EmbeddedNet width (8: ~11k parameters)")
    parser.add_argument("--train-n", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=4e-3, help="peak learning rate (one-cycle AdamW)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--held-out-n", type=int, default=2000)
    parser.add_argument("--cam-n", type=int, default=400, help="held-out images scored by Grad-CAM MAGTR")
    parser.add_argument("--train-agreement", type=float, default=shortcut_dataset.TRAIN_AGREEMENT,
                        help="share of training images whose cue names their class (0.125: a control without shortcut)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the checkpoint here (and <stem>_metrics.json beside it)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    train = generate(TRAIN_SEED, args.train_n, args.train_agreement)
    images, labels = train["images"], train["labels"]
    print(f"generated {len(images)} training images in {time.perf_counter() - started:.1f} s", flush=True)

    model = EmbeddedNet(len(dataset.CLASSES), width=args.width)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    steps_per_epoch = (len(images) + args.batch - 1) // args.batch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr,
                                                   total_steps=args.epochs * steps_per_epoch, pct_start=0.15)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total_loss = 0.0
        for start in range(0, len(images), args.batch):
            batch = order[start:start + args.batch]
            loss = F.cross_entropy(model(normalise(images[batch])), labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total_loss += loss.item() * len(batch)
        print(f"epoch {epoch + 1}/{args.epochs}  loss {total_loss / len(images):.4f}  "
              f"elapsed {time.perf_counter() - started:.0f} s", flush=True)
    train_seconds = time.perf_counter() - started

    model.eval()
    handle = LoadedModel.from_module(model, input_size=dataset.IMAGE_SIZE, categories=dataset.CLASSES,
                                     mean=dataset.MEAN, std=dataset.STD, name="shortcut",
                                     default_layer=DEFAULT_LAYER)
    splits = {"correlated": shortcut_dataset.TRAIN_AGREEMENT, "decorrelated": shortcut_dataset.DECORRELATED}
    results = {}
    for name, agreement in splits.items():
        split = generate(HELD_OUT_SEED, args.held_out_n, agreement)
        magtr_object, magtr_cue = gradcam_magtr(handle, split, args.cam_n)
        results[name] = {"agreement": agreement, "accuracy": accuracy(model, split["images"], split["labels"])[0],
                         "cue_following": cue_following(model, split),
                         "gradcam_magtr_object": magtr_object, "gradcam_magtr_cue": magtr_cue}
        print(f"{name:>12} (cue = label in {agreement:.0%}): accuracy {results[name]['accuracy']:.3f}  "
              f"follows a disagreeing cue {results[name]['cue_following']:.3f}  "
              f"Grad-CAM MAGTR object {magtr_object:.3f}  cue {magtr_cue:.3f}", flush=True)
    print(f"accuracy drop on the decorrelated split: "
          f"{results['correlated']['accuracy'] - results['decorrelated']['accuracy']:.3f}; "
          f"training wall time {train_seconds:.0f} s")

    if args.out is not None:
        size = save_embedded(model, args.out)
        metrics = {"arch": "embedded", "width": args.width, "train_seed": TRAIN_SEED, "held_out_seed": HELD_OUT_SEED,
                   "train_n": args.train_n, "train_agreement": args.train_agreement, "epochs": args.epochs,
                   "lr": args.lr, "held_out_n": args.held_out_n, "cam_n": args.cam_n, **results,
                   "train_seconds": round(train_seconds, 1), "threads": args.threads, "checkpoint_bytes": size, "torch": torch.__version__,
                   "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}
        args.out.with_name(args.out.stem + "_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"checkpoint {size} bytes -> {args.out}")


if __name__ == "__main__":
    main()
