"""Gradient and CAM methods against the model's own batched passes, with Captum and
pytorch-grad-cam on the same model, measured in the same run.

    python bench/bench_gradients.py [--device cpu] [--models resnet18,resnet50] [--size 224]
                                    [--samples 25] [--max-n 32] [--repeats 3] [--skip resnet50:scorecam]

Each method pushes a known number of images through the model: one forward + backward for
the single-pass gradient methods and the CAMs, two for Guided Grad-CAM, ``samples`` for
SmoothGrad, and one forward per scored channel (+1) for Score-CAM. The floor is the model's
batched forward (forward-only methods) or forward + input-gradient backward (the others) of
that many images, with the engine's batch size; ratio = method time / floor time. Weights are
random (timing only). Floor, ours and the references run in interleaved rounds after a
warm-up round, best of ``repeats`` kept (the warm-up round alone for calls over five seconds).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's Score-CAM progress bars
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xai_core.engine import Engine  # noqa: E402
from xai_core.methods import explain  # noqa: E402
from xai_core.models import build_random  # noqa: E402
from timing import sync  # noqa: E402

TARGET = 1


@dataclass
class Case:
    method: str
    params: dict
    backward: bool                      # floor: forward + backward, else forward only
    images: Callable[[int], int]        # images through the model, given the CAM layer's channels


def cases(samples: int, max_n: int) -> list[Case]:
    one = lambda k: 1  # noqa: E731
    return [
        Case("saliency", {}, True, one),
        Case("grad_x_input", {}, True, one),
        Case("smoothgrad", {"samples": samples}, True, lambda k: samples),
        Case("guided_backprop", {}, True, one),
        Case("deconvnet", {}, True, one),
        Case("cam", {}, False, one),
        Case("gradcam", {}, True, one),
        Case("gradcampp", {}, True, one),
        Case("guided_gradcam", {}, True, lambda k: 2),
        Case("scorecam", {}, False, lambda k: k + 1),
        Case("faster_scorecam", {"max_n": max_n}, False, lambda k: min(k, max_n) + 1),
    ]


def timed_together(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best time of each function over ``repeats`` interleaved rounds, so that a load change
    on the machine hits all of them alike. A first round warms up (new batch shapes, oneDNN
    primitives) and is discarded, unless a call took over 5 s: then it is the measurement."""
    best: dict[str, float] = {}
    for round_ in range(1 + max(1, repeats)):
        times = {}
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name] = time.perf_counter() - start
        if round_ == 0 and max(times.values()) > 5.0:
            return times
        if round_ > 0:
            best = {name: min(best.get(name, float("inf")), t) for name, t in times.items()}
    return best


def floor_fn(net, x: torch.Tensor, n: int, batch: int, backward: bool) -> Callable[[], None]:
    """n images through ``net`` in batches: forward only, or forward + gradient to the input."""
    def run():
        for start in range(0, n, batch):
            xs = x.unsqueeze(0).expand(min(batch, n - start), *x.shape).clone()
            if backward:
                xs.requires_grad_(True)
                torch.autograd.grad(net(xs)[:, TARGET].sum(), xs)
            else:
                with torch.no_grad():
                    net(xs)
        sync(x.device)
    return run


def references(model, x: torch.Tensor, layer_name: str, samples: int) -> dict[str, dict[str, Callable]]:
    """{method: {library: fn}} for the methods Captum / pytorch-grad-cam implement."""
    net, xb = model.module, x.unsqueeze(0)
    layer = net.get_submodule(layer_name)
    sigma = float(0.15 * (x.max() - x.min()))
    refs: dict[str, dict[str, Callable]] = {}
    try:
        from captum import attr
    except ImportError:
        attr = None
    if attr is not None:
        def layer_gradcam():
            cam = attr.LayerGradCam(net, layer).attribute(xb, target=TARGET, relu_attributions=True)
            return attr.LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")
        captum = {
            "saliency": lambda: attr.Saliency(net).attribute(xb, target=TARGET),
            "grad_x_input": lambda: attr.InputXGradient(net).attribute(xb.clone().requires_grad_(), target=TARGET),
            "smoothgrad": lambda: attr.NoiseTunnel(attr.Saliency(net)).attribute(
                xb, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=32, stdevs=sigma, target=TARGET),
            "guided_backprop": lambda: attr.GuidedBackprop(net).attribute(xb, target=TARGET),
            "deconvnet": lambda: attr.Deconvolution(net).attribute(xb, target=TARGET),
            "gradcam": layer_gradcam,
            "guided_gradcam": lambda: attr.GuidedGradCam(net, layer).attribute(xb, target=TARGET,
                                                                                interpolate_mode="bilinear"),
        }
        for name, fn in captum.items():
            refs.setdefault(name, {})["captum"] = fn
    try:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
    except ImportError:
        pgc = None
    if pgc is not None:
        def run_pgc(cls, target_cls):
            def run():
                with cls(net, [layer]) as cam:
                    cam.batch_size = 32
                    return cam(xb, [target_cls(TARGET)])
            return run
        for name, cls, target_cls in [("gradcam", pgc.GradCAM, ClassifierOutputTarget),
                                      ("gradcampp", pgc.GradCAMPlusPlus, ClassifierOutputTarget),
                                      ("scorecam", pgc.ScoreCAM, ClassifierOutputSoftmaxTarget)]:
            refs.setdefault(name, {})["pytorch-grad-cam"] = run_pgc(cls, target_cls)
    return refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--samples", type=int, default=25)
    parser.add_argument("--max-n", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated model:method pairs not to run")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    engine = Engine(device)
    batch = engine.initial_batch(10_000, "bench", None)
    print(f"device={device} ({torch.get_num_threads()} threads)  size={args.size}  engine batch={batch}  "
          f"smoothgrad samples={args.samples}  faster_scorecam max_n={args.max_n}")
    print(f"{'model':<9} {'method':<16} {'images':>6} {'floor s':>8} {'ours s':>8} {'ours×':>7} "
          f"{'captum×':>8} {'pgc×':>7}")
    for name in args.models.split(","):
        model = build_random(name, num_classes=1000, device=device)
        x = torch.randn(3, args.size, args.size, device=device)
        layer = model.default_layer
        channels = model.module.fc.in_features
        refs = references(model, x, layer, args.samples)
        floor_fn(model.module, x, batch, batch, True)()  # warm-up: allocator, kernels, thread pool
        for case in cases(args.samples, args.max_n):
            if f"{name}:{case.method}" in skip:
                continue
            n = case.images(channels)

            def ours():
                explain(model, x, case.method, TARGET, case.params, engine=engine)
                sync(device)
            fns = {"floor": floor_fn(model.module, x, n, batch, case.backward), "ours": ours}
            for lib, fn in refs.get(case.method, {}).items():
                if f"{name}:{case.method}:{lib}" not in skip:
                    fns[lib] = lambda fn=fn: (fn(), sync(device))
            times = timed_together(fns, args.repeats)
            floor, ours_s = times.pop("floor"), times.pop("ours")
            ratios = {lib: t / floor for lib, t in times.items()}
            cap, pgc = ratios.get("captum"), ratios.get("pytorch-grad-cam")
            print(f"{name:<9} {case.method:<16} {n:>6} {floor:>8.3f} {ours_s:>8.3f} {ours_s / floor:>7.2f} "
                  f"{'' if cap is None else f'{cap:.2f}':>8} {'' if pgc is None else f'{pgc:.2f}':>7}", flush=True)


if __name__ == "__main__":
    main()
