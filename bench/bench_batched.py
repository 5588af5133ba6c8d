"""Batched explanations over many images against one call per image, in the same run.

For each method: the time of ``explain_batch`` over N images (each with its own target) and of N
``explain`` calls, as a ratio (how many times faster the batch is), plus both as a ratio to the
model's own batched forward+backward over the same images (the bound for one-pass methods).

    python bench/bench_batched.py                    # embedded model, 512 images, 2 CPU threads
    python bench/bench_batched.py --device cuda      # absolute times are meaningful only on a GPU
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import best_time  # noqa: E402
from xai_core import dataset  # noqa: E402
from xai_core.engine import Engine  # noqa: E402
from xai_core.methods import explain, explain_batch  # noqa: E402
from xai_core.models import build_random, load_model  # noqa: E402

CASES = {"gradcam": {}, "saliency": {}, "ig": {"steps": 16}, "rise": {"masks": 200}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="embedded", help="embedded (trained) or a torchvision name (random)")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = load_model("embedded", device=device) if args.model == "embedded" else build_random(args.model, device=device)
    if args.model == "embedded":
        samples = dataset.samples(3, args.n)
        xs = dataset.normalize(np.stack([s.image for s in samples]), model.mean, model.std).to(device)
        labels = [s.label for s in samples]
    else:
        xs = torch.randn(args.n, 3, model.input_size, model.input_size, device=device)
        labels = [i % model.num_classes for i in range(args.n)]
    engine = Engine(device)

    def forward_backward():
        for chunk, ys in zip(xs.split(32), torch.tensor(labels, device=device).split(32)):
            chunk = chunk.clone().requires_grad_(True)
            torch.autograd.grad(model.module(chunk).gather(1, ys[:, None]).sum(), chunk)

    bound = best_time(forward_backward, args.repeats, device)
    print(f"{args.model}, {args.n} images at {model.input_size} px on {device}; forward+backward bound "
          f"{bound:.3f} s" + ("" if device.type == "cuda" else " (CPU: read the ratios, not the seconds)"))
    print(f"{'method':10s} {'batch / one-by-one':>20s} {'batch / bound':>14s} {'one-by-one / bound':>19s}")
    for name in args.methods.split(","):
        params = CASES.get(name, {})
        batched = best_time(lambda: explain_batch(model, xs, name, [[y] for y in labels], params, engine=engine),
                            args.repeats, device)
        single = best_time(lambda: [explain(model, x, name, y, params, engine=engine) for x, y in zip(xs, labels)],
                           args.repeats, device)
        print(f"{name:10s} {single / batched:19.2f}x {batched / bound:14.2f} {single / bound:19.2f}")


if __name__ == "__main__":
    main()
