"""Coarse-to-fine occlusion against the exhaustive sliding window: forward passes and agreement.

    python bench/bench_occlusion.py [--quick] [--device cpu]

For each model (random weights; "×10" multiplies the classifier's weights by 10, a sharper
softmax whose drops concentrate where a trained model's would; "patch" is a small random CNN
that reads only one 16-pixel square of the image, the case coarse-to-fine is made for) and each setting, it runs the
exhaustive occlusion and the coarse-to-fine one on the same random image and target (the
intact image's top class) and prints the forward passes each used, their ratio, the Pearson r
of the two drop maps and the share of occluder positions refined. Forward counts are exact;
no timing is reported (the ratio of forwards is the speed-up of the occluding work).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xai_core.engine import Engine  # noqa: E402
from xai_core.methods import explain  # noqa: E402
from xai_core.methods.occlusion import occluder_starts  # noqa: E402
from xai_core.model_handle import LoadedModel  # noqa: E402
from xai_core.models import build_random  # noqa: E402

MODELS = {"quick": [("patch", 112, 1, 4), ("embedded", 64, 1, 4), ("embedded", 64, 10, 4),
                    ("resnet18", 64, 1, 4), ("resnet18", 64, 10, 4)],
          "full": [("patch", 112, 1, 4), ("embedded", 64, 1, 4), ("embedded", 64, 10, 4), ("resnet18", 112, 1, 4),
                   ("resnet18", 112, 10, 4), ("resnet50", 112, 1, 4), ("resnet50", 112, 10, 4)]}
SETTINGS = ((1, 0.9), (1, 0.7), (2, 0.7), (2, 0.5))  # (levels, refine_mass)
WINDOW = 16
PATCH = (slice(40, 56), slice(64, 80))


class PatchNet(torch.nn.Module):
    """A classifier that sees only the pixels of ``PATCH``."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
        self.head = torch.nn.Linear(8 * 16, 10)

    def forward(self, x):
        return 10 * self.head(self.features(x[:, :, PATCH[0], PATCH[1]]))


def sharpened(arch: str, head_scale: float, device: torch.device):
    if arch == "patch":
        torch.manual_seed(0)
        return LoadedModel.from_module(PatchNet(), input_size=112, num_classes=10, default_layer="features.0",
                                       device=device)
    model = build_random(arch, device=device)
    head = [m for m in model.module.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.mul_(head_scale)
        if head.bias is not None:
            head.bias.mul_(head_scale)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-18 at 64 px, no ResNet-50 (CPU: < 3 min)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=1, help="random images per model (rows average them)")
    args = parser.parse_args()
    device = torch.device(args.device)
    engine = Engine(device)
    print(f"{'model':<16}{'px':>4}{'win/str':>9}{'levels':>7}{'mass':>6}{'forwards':>10}{'exhaust.':>10}{'fewer':>7}"
          f"{'r':>7}{'r min':>7}{'refined':>9}")
    for arch, side, head_scale, stride in MODELS["quick" if args.quick else "full"]:
        model = sharpened(arch, head_scale, device)
        generator = torch.Generator().manual_seed(0)
        images = [torch.randn(3, side, side, generator=generator).to(device) for _ in range(args.images)]
        targets = [model.predict(x, 1)[0]["index"] for x in images]
        exhaustive_params = {"window": WINDOW, "stride": stride}
        references = [explain(model, x, "occlusion", [t], exhaustive_params, engine=engine)[0]
                      for x, t in zip(images, targets)]
        for levels, mass in SETTINGS:
            if len(occluder_starts(side, WINDOW, stride)) < 2**levels + 1:  # refused: too few positions
                continue
            setting = dict(exhaustive_params, levels=levels, refine_mass=mass)
            rows = []
            for x, target, full in zip(images, targets, references):
                fast = explain(model, x, "occlusion", [target], dict(setting, search="coarse_to_fine"),
                               engine=engine)[0]
                rows.append((fast.extras["forwards"], full.extras["forwards"],
                             np.corrcoef(full.map.ravel(), fast.map.ravel())[0, 1], fast.extras["refined_grid"].mean()))
            forwards, exhaustive, r, refined = (np.array(c, dtype=float) for c in zip(*rows))
            name = arch + ("" if head_scale == 1 else f" ×{head_scale:g}")
            print(f"{name:<16}{side:>4}{WINDOW:>5}/{stride:<3}{levels:>7}{mass:>6.2f}"
                  f"{forwards.mean():>10.0f}{exhaustive.mean():>10.0f}{(exhaustive / forwards).mean():>6.1f}×"
                  f"{r.mean():>7.3f}{r.min():>7.3f}{refined.mean():>8.0%}", flush=True)


if __name__ == "__main__":
    main()
