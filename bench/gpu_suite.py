"""Every registered method on one device, against Captum and pytorch-grad-cam and the model's own bound.

    python bench/gpu_suite.py                          # CUDA: ResNet-50 and ViT-B/16, 224 px, batches 1 and 32
    python bench/gpu_suite.py --device cpu --quick     # CPU: ResNet-18, 64 px, batches 1 and 4 (the README table)
    python bench/gpu_suite.py --json rows.json [--channels-last] [--compile]

One row per (model, method, batch size B): our time for ``explain_batch`` of B images (one target
each), the same explanation by Captum and pytorch-grad-cam at equal settings where they have the
method, each as a ratio to the **bound**: the time of the method's own number of model passes
(forward, + input-gradient backward for gradient methods) over B images at the engine's batch
size, measured in the same run (interleaved rounds, best kept: ``bench_gradients.timed_together``).
Peak memory is ``torch.cuda.max_memory_allocated`` during our call ("—" on the CPU). RISE runs
8000 masks at B = 1 (its default at B > 1). Weights are random: only times mean anything.
``--channels-last`` stores the weights NHWC (``LoadedModel.to_channels_last``); ``--compile``
wraps the module in ``torch.compile`` after the warm-up (opt-in: it pays off only if the compile
time is amortised, to be measured on a GPU).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's Score-CAM progress bars
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_gradients import floor_fn, timed_together  # noqa: E402
from xai_core.engine import Engine  # noqa: E402
from xai_core.methods import METHODS, explain_batch  # noqa: E402
from xai_core.models import build_random  # noqa: E402

TARGET = 1  # floor_fn differentiates this class
FULL_RISE_MASKS = 8000


def params_for(name: str, quick: bool, batch: int) -> dict:
    """Settings of the timed call: the defaults, lighter in ``--quick``, RISE at 8000 masks for one image."""
    if quick:  # one forward per channel: layer2's 128 channels keep Score-/Ablation-CAM short on a CPU
        return {"smoothgrad": {"samples": 8}, "ig": {"steps": 16}, "rise": {"masks": 500},
                "scorecam": {"layer": "layer2"}, "ablationcam": {"layer": "layer2"}}.get(name, {})
    return {"rise": {"masks": FULL_RISE_MASKS}} if name == "rise" and batch == 1 else {}


def passes(name: str, params: dict, channels: int, size: int) -> tuple[int, bool]:
    """(model passes per image, with an input-gradient backward?) for the method's bound."""
    defaults = {k: p.default for k, p in METHODS[name].params.items()}
    p = {**defaults, **params}
    if name == "smoothgrad":
        return p["samples"], True
    if name == "ig":
        return p["steps"], True
    if name == "rise":
        return p["masks"], False
    if name in ("scorecam", "ablationcam"):
        return channels + 1, False
    if name == "faster_scorecam":
        return min(channels, p["max_n"]) + 1, False
    if name == "occlusion":
        return ((size - p["window"]) // p["stride"] + 1) ** 2 + 1, False
    if name == "guided_gradcam":
        return 2, True
    return 1, METHODS[name].family != "attention" and name not in ("cam", "eigencam")


def peers(model, xs: torch.Tensor, layer_name: str, params: dict) -> dict[str, dict[str, Callable]]:
    """{method: {library: fn}} over the batch ``xs`` at the settings of ``params``, where the peer has it."""
    net, targets = model.module, [TARGET] * len(xs)
    refs: dict[str, dict[str, Callable]] = {}
    try:
        from captum import attr
        layer = net.get_submodule(layer_name) if layer_name else None
        sg = params.get("smoothgrad", {})
        steps = params.get("ig", {}).get("steps", METHODS["ig"].params["steps"].default)
        captum = {
            "saliency": lambda: attr.Saliency(net).attribute(xs, target=targets),
            "gradient": lambda: attr.Saliency(net).attribute(xs, target=targets, abs=False),
            "grad_x_input": lambda: attr.InputXGradient(net).attribute(xs.clone().requires_grad_(), target=targets),
            "guided_backprop": lambda: attr.GuidedBackprop(net).attribute(xs, target=targets),
            "deconvnet": lambda: attr.Deconvolution(net).attribute(xs, target=targets),
            "ig": lambda: attr.IntegratedGradients(net).attribute(xs, target=targets, n_steps=steps,
                                                                  internal_batch_size=32 * len(xs)),
            "smoothgrad": lambda: attr.NoiseTunnel(attr.Saliency(net)).attribute(
                xs, nt_type="smoothgrad", nt_samples=sg.get("samples", 25), nt_samples_batch_size=32,
                stdevs=0.15 * float(xs.max() - xs.min()), target=targets),
            "occlusion": lambda: attr.Occlusion(net).attribute(xs, target=targets, sliding_window_shapes=(3, 16, 16),
                                                               strides=(3, 8, 8)),
        }
        if layer is not None:
            captum["gradcam"] = lambda: attr.LayerAttribution.interpolate(
                attr.LayerGradCam(net, layer).attribute(xs, target=targets, relu_attributions=True),
                tuple(xs.shape[-2:]), "bilinear")
            captum["guided_gradcam"] = lambda: attr.GuidedGradCam(net, layer).attribute(xs, target=targets)
        for name, fn in captum.items():
            refs.setdefault(name, {})["captum"] = fn
    except ImportError:
        pass
    try:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
    except ImportError:
        return refs
    if layer_name:
        def run(cls, target_cls):
            def call():
                with cls(net, [net.get_submodule(layer_name)]) as cam:
                    cam.batch_size = 32
                    return cam(xs, [target_cls(t) for t in targets])
            return call
        for name, cls, target_cls in [("gradcam", pgc.GradCAM, ClassifierOutputTarget),
                                      ("gradcampp", pgc.GradCAMPlusPlus, ClassifierOutputTarget),
                                      ("xgradcam", pgc.XGradCAM, ClassifierOutputTarget),
                                      ("hirescam", pgc.HiResCAM, ClassifierOutputTarget),
                                      ("layercam", pgc.LayerCAM, ClassifierOutputTarget),
                                      ("eigencam", pgc.EigenCAM, ClassifierOutputTarget),
                                      ("ablationcam", pgc.AblationCAM, ClassifierOutputTarget),
                                      ("scorecam", pgc.ScoreCAM, ClassifierOutputSoftmaxTarget)]:
            refs.setdefault(name, {})["pytorch-grad-cam"] = run(cls, target_cls)
    return refs


def channels_of(model, layer: str) -> int:
    """Channels of the CAM ``layer``'s output (its last convolution's), 0 without one."""
    convs = [m for m in model.get_layer(layer).modules() if isinstance(m, torch.nn.Conv2d)] if layer else []
    return convs[-1].out_channels if convs else 0


def peak_memory(device: torch.device, fn: Callable[[], object]) -> str:
    """Peak allocated memory of one call of ``fn`` in MB, "—" off CUDA."""
    if device.type != "cuda":
        return "—"
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return f"{(torch.cuda.max_memory_allocated(device) - before) / 2**20:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="ResNet-18, 64 px, batches 1 and 4, lighter settings")
    parser.add_argument("--models", default="", help="comma-separated; default resnet50,vit_b_16 (quick: resnet18)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--json", default="", help="also write the rows to this file")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the module (opt-in, default off)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    size, batches = (64, [1, 4]) if args.quick else (224, [1, 32])
    models = args.models.split(",") if args.models else (["resnet18"] if args.quick else ["resnet50", "vit_b_16"])
    engine = Engine(device)
    chunk = engine.initial_batch(10_000, "bench", None)
    print(f"device={device} ({torch.get_num_threads()} threads)  {size} px  engine batch={chunk}  "
          f"channels_last={args.channels_last}  compile={args.compile}; ratios = time / bound of the same run")
    print(f"{'model':<9} {'method':<16} {'B':>3} {'passes':>6} {'bound s':>8} {'ours s':>8} {'ours×':>6} "
          f"{'captum×':>8} {'pgc×':>6} {'peak MB':>8}")
    rows = []
    for model_name in models:
        model = build_random(model_name, num_classes=1000, device=device)
        if args.channels_last:
            model.to_channels_last()
        floor_fn(model.module, torch.randn(3, size, size, device=device), chunk, chunk, True)()  # warm-up
        if args.compile:
            model.module = torch.compile(model.module)
        for batch in batches:
            xs = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)).to(device)
            for name in args.methods.split(","):
                params = params_for(name, args.quick, batch)
                layer = params.get("layer", model.default_layer)
                n_passes, backward = passes(name, params, channels_of(model, layer), size)

                def ours(name=name, params=params):
                    try:
                        return explain_batch(model, xs, name, [[TARGET]] * batch, params, engine=engine)
                    except Exception as err:  # noqa: BLE001 - a method may refuse the model (rollout on a CNN)
                        return err
                if isinstance(ours(), Exception):
                    continue
                fns = {"bound": floor_fn(model.module, xs[0], n_passes * batch, chunk, backward), "ours": ours}
                fns.update(peers(model, xs, layer, {name: params}).get(name, {}))
                times = timed_together(fns, args.repeats)
                bound, ours_s = times.pop("bound"), times.pop("ours")
                ratios = {lib: t / bound for lib, t in times.items()}
                row = {"model": model_name, "method": name, "batch": batch, "passes": n_passes, "bound_s": bound,
                       "ours_s": ours_s, "ours_ratio": ours_s / bound, "captum_ratio": ratios.get("captum"),
                       "pgc_ratio": ratios.get("pytorch-grad-cam"), "peak_mb": peak_memory(device, ours),
                       "params": params}
                rows.append(row)
                cap, pgc = row["captum_ratio"], row["pgc_ratio"]
                print(f"{model_name:<9} {name:<16} {batch:>3} {n_passes:>6} {bound:>8.3f} {ours_s:>8.3f} "
                      f"{ours_s / bound:>6.2f} {'' if cap is None else f'{cap:.2f}':>8} "
                      f"{'' if pgc is None else f'{pgc:.2f}':>6} {row['peak_mb']:>8}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "size": size, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
