"""Train the embedded model on the procedural dataset and ship ``xai_core/assets/embedded.pt``.

    python scripts/train_embedded.py --threads 1   # how the shipped checkpoint was made

On a 2-core machine shared with other jobs, one thread trained ~5× faster than two (two
OpenMP threads stall each other when the cores are busy); on an idle machine use the
default of 2. About 230 CPU-seconds in all; the wall time is in the metrics file.

Seeded end to end: the training images come from ``TRAIN_SEED``, the held-out metrics from
``HELD_OUT_SEED`` (never used for training; the tests use yet another seed). Writes the
checkpoint and ``xai_core/assets/embedded_metrics.json`` (held-out accuracy, per-class accuracy,
training seconds, checkpoint bytes, torch version, command).
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
from xai_core import dataset  # noqa: E402
from xai_core.embedded import CHECKPOINT, EmbeddedNet, save_embedded  # noqa: E402

TRAIN_SEED = 1
HELD_OUT_SEED = 2


def generate(seed: int, n: int, chunk: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 N×3×H×W images and labels (uint8 keeps 20k images at 250 MB, not 1 GB)."""
    images, labels = [], []
    for start in range(0, n, chunk):
        batch = [dataset.make_sample(seed, i) for i in range(start, min(n, start + chunk))]
        images.append(torch.from_numpy(np.stack([s.image for s in batch])).permute(0, 3, 1, 2))
        labels.append(torch.tensor([s.label for s in batch]))
    return torch.cat(images), torch.cat(labels)


def normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(dataset.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(dataset.STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random flip/quarter-turn per batch: every class is invariant to them."""
    k = int(torch.randint(4, (1,), generator=generator))
    x = torch.rot90(x, k, (2, 3))
    return x.flip(3) if torch.rand(1, generator=generator) < 0.5 else x


@torch.no_grad()
def accuracy(model: EmbeddedNet, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict]:
    model.eval()
    predicted = torch.cat([model(normalise(images[i:i + 500])).argmax(1) for i in range(0, len(images), 500)])
    correct = predicted == labels
    per_class = {name: float(correct[labels == k].float().mean()) for k, name in enumerate(dataset.CLASSES)}
    return float(correct.float().mean()), per_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-n", type=int, default=16000, help="training images (generated once)")
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--held-out-n", type=int, default=2000)
    parser.add_argument("--width", type=int, default=16, help="channels of the first block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=CHECKPOINT)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()

    images, labels = generate(TRAIN_SEED, args.train_n)
    print(f"generated {len(images)} training images in {time.perf_counter() - started:.1f} s", flush=True)

    model = EmbeddedNet(width=args.width)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    steps_per_epoch = (len(images) + args.batch - 1) // args.batch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                   pct_start=0.15)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total_loss, total_correct = 0.0, 0
        for start in range(0, len(images), args.batch):
            batch = order[start:start + args.batch]
            x, y = dihedral(normalise(images[batch]), generator), labels[batch]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total_loss += loss.item() * len(batch)
            total_correct += int((logits.argmax(1) == y).sum())
        print(f"epoch {epoch + 1}/{args.epochs}  loss {total_loss / len(images):.4f}  "
              f"train acc {total_correct / len(images):.4f}  elapsed {time.perf_counter() - started:.0f} s", flush=True)
    train_seconds = time.perf_counter() - started

    held_images, held_labels = generate(HELD_OUT_SEED, args.held_out_n)
    held_accuracy, per_class = accuracy(model, held_images, held_labels)
    size = save_embedded(model.eval(), args.out)
    metrics = {
        "held_out_accuracy": held_accuracy, "held_out_per_class": per_class, "held_out_n": args.held_out_n,
        "held_out_seed": HELD_OUT_SEED, "train_seed": TRAIN_SEED, "train_n": args.train_n, "epochs": args.epochs,
        "width": args.width,
        "train_seconds": round(train_seconds, 1), "threads": args.threads, "checkpoint_bytes": size,
        "parameters": sum(p.numel() for p in model.parameters()), "torch": torch.__version__,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
    }
    args.out.with_name(args.out.stem + "_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"held-out accuracy {held_accuracy:.4f} on {args.held_out_n} images; per class "
          + ", ".join(f"{k} {v:.3f}" for k, v in per_class.items()))
    print(f"training wall time {train_seconds:.0f} s; checkpoint {size} bytes -> {args.out}")


if __name__ == "__main__":
    main()
