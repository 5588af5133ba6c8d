"""Images per second of each metric family, ours against Quantus 0.6.0 on the same maps and masks.

    python bench/bench_metrics.py [--device cpu] [--n64 512] [--n224 64] [--faith-n224 8] [--steps 24]
                                  [--sanity-n 128] [--rounds 3] [--slow-rounds 1] [--threads 1]

Two workloads: ``--n64`` random maps and masks at 64 px (the embedded model's inputs) and
``--n224`` at 224 px (a random-weights ResNet-50's). Localisation metrics compare maps with object
masks; deletion and insertion run the embedded model, then ResNet-50, on random inputs with
``--steps`` steps (a multiple of 3 whose third divides H·W: Quantus's ``features_in_step`` must
divide H·W while it flips C·H·W values); insertion is timed against ``PixelFlipping`` started from
the blurred image. The sanity check (cascading randomisation, Spearman, saliency maps, every layer:
Quantus's ``MPRT`` cannot stop early) runs on ``--sanity-n`` embedded images only; both sides
explain through ``xai_core.methods.explain_batch``, so the ratio is the metric's own overhead.
Ours receives the maps on the device, Quantus the same maps as host numpy arrays, each library's
native input. Ours and Quantus's run in alternating rounds, the best of ``--rounds`` kept after a
warm-up call of each (``--slow-rounds`` without warm-up for deletion, insertion and the sanity
check), so that a load change on a shared machine hits both alike. ``--faith-n224`` lowers the ResNet-50 image count
of deletion/insertion on a CPU. Weights are random except the embedded model's (timing only).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import best_time  # noqa: E402

from xai_core.engine import Engine  # noqa: E402
from xai_core.methods import explain_batch  # noqa: E402
from xai_core.metrics import GroundTruth, MetricContext, compute  # noqa: E402
from xai_core.model_handle import LoadedModel  # noqa: E402
from xai_core.models import build_random, load_model  # noqa: E402
from xai_core.replacements import replacement_image  # noqa: E402

LOCALISATION = {  # ours → Quantus's metric with the same formula
    "pointing_game": lambda q: q.PointingGame(disable_warnings=True),
    "energy_pointing_game": lambda q: q.AttributionLocalisation(positive_attributions=True, abs=False,
                                                                disable_warnings=True),
    "relevance_mass_accuracy": lambda q: q.RelevanceMassAccuracy(disable_warnings=True),
    "relevance_rank_accuracy": lambda q: q.RelevanceRankAccuracy(disable_warnings=True),
    "hagtr": None, "magtr": None, "mangtr": None,
}


def random_masks(n: int, side: int, seed: int) -> torch.Tensor:
    """n boxes of random sizes and places, as B×H×W bool masks."""
    rng = np.random.default_rng(seed)
    x0, y0 = rng.integers(0, side // 2, size=(2, n))
    w, h = rng.integers(side // 8, side // 2, size=(2, n))
    ys, xs = np.mgrid[:side, :side]
    inside_y = (ys >= y0[:, None, None]) & (ys < (y0 + h)[:, None, None])
    inside_x = (xs >= x0[:, None, None]) & (xs < (x0 + w)[:, None, None])
    return torch.from_numpy(inside_y & inside_x)


def copy_in(arr, indices, perturb_baseline, **kwargs):
    """Quantus perturb_func: flipped values come from ``perturb_baseline`` (insertion: the image)."""
    out = arr.copy()
    rows = np.arange(len(arr))[:, None]
    out[rows, indices] = perturb_baseline[rows, indices]
    return out


def interleaved(ours: Callable[[], object], theirs: Callable[[], object] | None, rounds: int,
                device: torch.device, *, warmup: bool = True) -> tuple[float, float | None]:
    """Best time of ours and of Quantus's over ``rounds`` alternating rounds (a load change on the
    machine hits both alike), after one warm-up call of each if asked."""
    best_ours, best_theirs = float("inf"), float("inf") if theirs else None
    for fn in (ours, theirs) if warmup else ():
        if fn:
            fn()
    for _ in range(rounds):
        best_ours = min(best_ours, best_time(ours, 1, device, warmup=False))
        if theirs:
            best_theirs = min(best_theirs, best_time(theirs, 1, device, warmup=False))
    return best_ours, best_theirs


def row(family: str, metric: str, size: str, n: int, ours: float, theirs: float | None) -> None:
    """One line of the table: images per second, ours, Quantus's, and the ratio."""
    quantus_rate = f"{n / theirs:12.1f}" if theirs else f"{'—':>12}"
    ratio = f"{theirs / ours:8.1f}×" if theirs else f"{'—':>9}"
    print(f"{family:<13}{metric:<26}{size:<16}{n / ours:12.1f}{quantus_rate}{ratio}", flush=True)


def bench_localisation(quantus, maps: torch.Tensor, masks: torch.Tensor, size: str, rounds: int) -> None:
    device = maps.device
    truth = GroundTruth(masks=masks.to(device))
    a_host, s_host = maps.cpu().numpy()[:, None], masks.numpy()[:, None]
    x_host = np.zeros((len(maps), 3, *maps.shape[-2:]), dtype=np.float32)
    y_host = np.zeros(len(maps), dtype=int)
    for name, make in LOCALISATION.items():
        with contextlib.redirect_stdout(io.StringIO()):  # its abs=False advice is printed, not warned
            metric = make(quantus) if make else None
        theirs = metric and (lambda: metric(model=None, x_batch=x_host, y_batch=y_host, a_batch=a_host,
                                            s_batch=s_host))
        times = interleaved(lambda: compute(name, maps, truth, params={"region": "mask"}), theirs, rounds, device)
        row("localisation", name, size, len(maps), *times)


def bench_faithfulness(quantus, model: LoadedModel, n: int, steps: int, size: str, rounds: int) -> None:
    device, side = model.device, model.input_size
    generator = torch.Generator().manual_seed(0)
    xs = torch.randn(n, 3, side, side, generator=generator)
    maps = torch.rand(n, side, side, generator=generator)
    targets = torch.randint(0, model.num_classes, (n,), generator=generator)
    context = MetricContext(model, xs.to(device), targets.to(device), Engine(device), "saliency")
    device_maps = maps.to(device)
    blurred = torch.stack([replacement_image(model, x, "blur") for x in xs.to(device)]).cpu()
    quantus_runs = {
        "deletion": (xs, dict(perturb_baseline=0.0)),
        "insertion": (blurred, dict(perturb_func=copy_in,
                                    perturb_func_kwargs={"perturb_baseline": xs.flatten(1).numpy()})),
    }
    for name, (start, settings) in quantus_runs.items():
        metric = quantus.PixelFlipping(features_in_step=3 * side * side // steps, normalise=False, abs=False,
                                       disable_warnings=True, **settings)
        times = interleaved(
            lambda: compute(name, device_maps, context=context, params={"steps": steps}),
            lambda: metric(model=model.module, x_batch=start.numpy(), y_batch=targets.numpy(),
                           a_batch=maps.numpy()[:, None], device=str(device)), rounds, device, warmup=False)
        row("faithfulness", f"{name} ({steps} steps)", size, n, *times)


def bench_sanity(quantus, model: LoadedModel, n: int, size: str, rounds: int) -> None:
    device = model.device
    xs = torch.randn(n, 3, model.input_size, model.input_size, generator=torch.Generator().manual_seed(0)).to(device)
    targets = torch.arange(n, device=device) % model.num_classes
    engine = Engine(device)
    target_lists = [[int(t)] for t in targets]
    maps = torch.from_numpy(np.stack([e[0].map for e in explain_batch(model, xs, "saliency", target_lists,
                                                                      engine=engine)]))
    context = MetricContext(model, xs, targets, engine, "saliency")

    def explain_func(model, inputs, targets, **kwargs):
        handle = LoadedModel.from_module(model, input_size=inputs.shape[-1], categories=context.model.categories,
                                         mean=context.model.mean, std=context.model.std,
                                         default_layer=context.model.default_layer, device=device)
        results = explain_batch(handle, torch.as_tensor(inputs, device=device), "saliency",
                                [[int(t)] for t in targets], engine=engine)
        return np.stack([r[0].map for r in results])[:, None]

    metric = quantus.MPRT(disable_warnings=True)
    times = interleaved(
        lambda: compute("cascading_randomisation", maps.to(device), context=context),
        lambda: metric(model=model.module, x_batch=xs.cpu().numpy(), y_batch=targets.cpu().numpy(),
                       a_batch=maps.numpy()[:, None], explain_func=explain_func, device=str(device)),
        rounds, device, warmup=False)
    row("sanity", "cascading_randomisation", size, n, *times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n64", type=int, default=512, help="maps at 64 px (embedded model)")
    parser.add_argument("--n224", type=int, default=64, help="maps at 224 px (ResNet-50, random weights)")
    parser.add_argument("--faith-n224", type=int, help="ResNet-50 images for deletion/insertion (default: --n224)")
    parser.add_argument("--steps", type=int, default=24, help="deletion/insertion steps (multiple of 3)")
    parser.add_argument("--sanity-n", type=int, default=128, help="embedded images for the sanity check (0: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (best kept)")
    parser.add_argument("--slow-rounds", type=int, default=1, help="rounds for deletion/insertion and sanity")
    parser.add_argument("--threads", type=int, help="CPU threads (1 on a shared, oversubscribed machine)")
    args = parser.parse_args()
    import quantus

    if args.threads:
        torch.set_num_threads(args.threads)

    warnings.filterwarnings("ignore")  # Quantus warns about its parameterisation on every call
    device = torch.device(args.device)
    print(f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, "
          f"quantus {quantus.__version__}; images per second")
    print(f"{'family':<13}{'metric':<26}{'maps':<16}{'ours':>12}{'Quantus':>12}{'ratio':>9}")
    embedded, resnet = load_model("embedded", device=device), build_random("resnet50", device=device)
    for n, model in ((args.n64, embedded), (args.n224, resnet)):
        side = model.input_size
        maps = torch.rand(n, side, side, generator=torch.Generator().manual_seed(1)).to(device)
        bench_localisation(quantus, maps, random_masks(n, side, seed=2), f"{n}×{side}px", args.rounds)
    for n, model in ((args.n64, embedded), (args.faith_n224 or args.n224, resnet)):
        bench_faithfulness(quantus, model, n, args.steps, f"{n}×{model.input_size}px {model.name}", args.slow_rounds)
    if args.sanity_n:
        bench_sanity(quantus, embedded, args.sanity_n, f"{args.sanity_n}×64px embedded", args.slow_rounds)


if __name__ == "__main__":
    main()
