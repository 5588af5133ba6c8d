"""What if the object is removed? On embedded-dataset samples (ground-truth object masks), remove the
object's mask region, or keep only it, and see what happens to the true class's probability.

    python scripts/whatif_study.py [--model embedded] [--images 64] [--seed 0]

For each replacement, over the images the model gets right: the rate where removing the object's mask
drops the true class's probability below half its value (and where the top-1 changes), and the rate
where keeping only the mask keeps the true class top-1; the same with the object's box. The mask is a
``Cells`` region of 1-pixel cells (the sample's 64 px mask is the embedded input's own coordinates). A
constant fill of the mask leaves the object's silhouette, which a shapes model still reads: the box
removes it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xai_core import dataset  # noqa: E402
from xai_core.edits import Box, Cells, Edit, apply_edits  # noqa: E402
from xai_core.models import load_model  # noqa: E402

REPLACEMENTS = ("black", "grey", "blur", "noise")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    samples = [dataset.make_sample(args.seed, i) for i in range(args.images)]
    xs = torch.stack([model.preprocess(s.pil()) for s in samples])
    if xs.shape[-1] != dataset.IMAGE_SIZE:
        raise SystemExit("The study needs a model whose input is the dataset's 64 px image.")
    with torch.no_grad():
        before = model.module(xs).softmax(-1)
    correct = [i for i, s in enumerate(samples) if int(before[i].argmax()) == s.label]
    print(f"{args.model}: {len(correct)} of {len(samples)} images classified correctly (seed {args.seed}); "
          "rates over those")
    print("| region | replacement | remove: p(true) < half | remove: top-1 changes | keep only: top-1 kept |")
    print("|---|---|---|---|---|")
    for shape, replacement in [(r, f) for r in ("mask", "box") for f in REPLACEMENTS]:
        halved = changed = kept = 0
        for i in correct:
            label = samples[i].label
            rows, cols = samples[i].object_mask.nonzero()
            x0, y0, x1, y1 = samples[i].box
            region = Cells(frozenset(zip(rows.tolist(), cols.tolist())), 1) if shape == "mask" else \
                Box(x0, y0, x1 - 1, y1 - 1)
            removed, only = (apply_edits(model, xs[i], [Edit(region, mode=mode, replacement=replacement)])
                             for mode in ("remove", "keep"))
            with torch.no_grad():
                p = model.module(torch.stack([removed, only])).softmax(-1)
            halved += float(p[0, label]) < float(before[i, label]) / 2
            changed += int(p[0].argmax()) != label
            kept += int(p[1].argmax()) == label
        n = max(1, len(correct))
        print(f"| {shape} | {replacement} | {halved / n:.0%} | {changed / n:.0%} | {kept / n:.0%} |")


if __name__ == "__main__":
    main()
