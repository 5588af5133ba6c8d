"""RIG step 2: one support regression network per α > 0, trained from a copy of the classifier.

Each copy regresses the paper's modified targets (``targets.modified_targets``) with MSE and
Adam. The whole network stays in eval mode while training: BatchNorm keeps the classifier's
running statistics (the targets were computed with them, and small two-class batches would
skew them) and dropout is off (the targets are deterministic outputs, not labels). α = 0 is
the classifier itself: its targets are its own outputs, so it is never trained.

Trained sets are stored on disk (``store``) and read back by the next identical request.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from .. import precision
from ..engine import Engine, Progress, is_oom, oom_guard
from ..errors import ParameterError
from ..model_handle import LoadedModel
from . import store
from .data import TrainingData
from .defaults import (ALPHA, DEFAULT_ALPHAS, DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_SEED,
                       MAX_ALPHAS, TRAINING)
from .targets import batched_logits, modified_targets

MODES = ("auto", "sequential", "batched")


class StoreWarning(UserWarning):
    """The on-disk store was damaged or could not be written; the networks work all the same
    (``SupportNetworks.notices`` holds the same sentences for a page to show)."""


@dataclass
class SupportNetworks:
    """The trained support networks of one request, with their learning curves and where they are stored."""
    classes: tuple[int, int]
    alphas: list[float]                        # as requested (0 included when asked)
    networks: dict[float, nn.Module]           # trained α > 0 → network (eval mode, on the model's device)
    curves: dict[float, list[float]]           # α → [MSE before training, mean MSE of each epoch]
    key: str
    directory: Path
    loaded_from_disk: bool
    mode: str                                  # "batched" or "sequential"
    notices: tuple[str, ...] = ()              # a damaged stored set replaced, a set that could not be stored

    def modules(self, model: LoadedModel) -> list[tuple[str, nn.Module]]:
        """Every network RIG looks at, the classifier first (α = 0 is the classifier itself)."""
        return [("classifier", model.module)] + [(f"α={a:g}", self.networks[a]) for a in self.alphas if a != 0]


def parse_alphas(text: str) -> list[float]:
    """α values from text such as "0, 2, 4" (commas or semicolons), each checked (``checked_alphas``)."""
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ParameterError(f"α values must be numbers separated by commas (e.g. 0,2,4,6,8); got '{text}'.") from None
    return checked_alphas(values)


def checked_alphas(alphas: Sequence[float]) -> list[float]:
    """Distinct α values, each finite and within ``ALPHA``'s bounds, at most ``MAX_ALPHAS`` of them."""
    values = [ALPHA.parse("α", a) for a in alphas]
    if not values or len(set(values)) != len(values):
        raise ParameterError("α values must be distinct, non-negative numbers (e.g. 0,2,4,6,8).")
    if len(values) > MAX_ALPHAS:
        raise ParameterError(f"At most {MAX_ALPHAS} α values can be trained at once; got {len(values)}.")
    return values


def format_alphas(alphas: Sequence[float]) -> str:
    """The text ``parse_alphas`` reads back: "0, 2, 4"."""
    return ", ".join(f"{a:g}" for a in alphas)


Fitted = tuple[list[nn.Module], list[list[float]]]  # trained networks, their per-epoch mean MSE


@contextlib.contextmanager
def _conv_backward_without_onednn(device: torch.device) -> Iterator[None]:
    """On the CPU, training runs with oneDNN (mkldnn) off: torch 2.15's oneDNN 1×1-convolution weight
    gradient (``jit_avx2_1x1_convolution_bwd_weights``) was seen to spin forever in its OpenMP region on
    2 cores (3 hangs in 4 runs of tests/test_rig.py's two-architecture test, none in 7 without it)."""
    if device.type != "cpu":
        yield
        return
    with warnings.catch_warnings():  # setting the flags warns about Intel-GPU TF32, which does not apply
        warnings.filterwarnings("ignore", "TF32 acceleration on top of oneDNN", UserWarning)
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def _private_copy(model: LoadedModel, state: store.StateDict | None = None) -> nn.Module:
    """A copy of the classifier for this request only (the shared model is never trained), in eval
    mode; with ``state``, a stored support network (frozen)."""
    with model.lock:
        module = copy.deepcopy(model.module)
    if state is not None:
        module.load_state_dict(state)
        module.requires_grad_(False)
    return module.eval()


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _fit_sequential(base: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, lr: float, epochs: int,
                    batch_size: int, seed: int, device: torch.device, progress: Progress | None) -> Fitted:
    """Plain training, one copy after the other. ``targets`` is K×N×classes."""
    nets, curves = [], []
    k_total = len(targets)
    for k, target in enumerate(targets):
        net = copy.deepcopy(base).eval()
        for p in net.parameters():
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed)
        curve = []
        for epoch in range(epochs):
            losses = []
            batches = _batches(len(images), batch_size, generator)
            for i, idx in enumerate(batches):
                xb, yb = images[idx].to(device), target[idx].to(device)
                with precision.section(device, "logits"):
                    loss = nn.functional.mse_loss(net(xb).float(), yb)
                grads = torch.autograd.grad(loss, list(net.parameters()))
                for p, g in zip(net.parameters(), grads):
                    p.grad = g
                optimizer.step()
                losses.append(loss.detach())  # stays on the device: one host copy per epoch, not per batch
                if progress is not None:
                    progress((k * epochs + epoch + (i + 1) / len(batches)) / (k_total * epochs),
                             f"support network {k + 1}/{k_total}, epoch {epoch + 1}/{epochs}")
            curve.append(float(torch.stack(losses).double().mean()))
        nets.append(net.requires_grad_(False))
        curves.append(curve)
    return nets, curves


def _fit_batched(base: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, lr: float, epochs: int,
                 batch_size: int, seed: int, device: torch.device, progress: Progress | None) -> Fitted:
    """The K copies trained together: stacked parameters, one vmapped forward/backward per batch.

    Adam works element-wise and the summed loss separates over the copies, so this is the same
    optimisation as ``_fit_sequential`` (same batch order), K networks per pass.
    """
    from torch.func import functional_call, stack_module_state, vmap

    k_total = len(targets)
    params, buffers = stack_module_state([copy.deepcopy(base) for _ in range(k_total)])
    params = {name: p.detach().clone().requires_grad_(True) for name, p in params.items()}
    skeleton = copy.deepcopy(base).to("meta")

    def loss_of(p, b, xb, yb):
        return nn.functional.mse_loss(functional_call(skeleton, (p, b), (xb,)).float(), yb)

    vmapped = vmap(loss_of, in_dims=(0, 0, None, 0))

    def losses_of(*args):
        # Some layers (adaptive pooling) have no vmap rule and fall back to a loop, with a warning.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="There is a performance drop")
            return vmapped(*args)
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    curves: list[list[float]] = [[] for _ in range(k_total)]
    for epoch in range(epochs):
        epoch_losses = []
        batches = _batches(len(images), batch_size, generator)
        for i, idx in enumerate(batches):
            xb, yb = images[idx].to(device), targets[:, idx].to(device)
            with precision.section(device, "logits"):
                losses = losses_of(params, buffers, xb, yb)
            grads = torch.autograd.grad(losses.sum(), list(params.values()))
            for p, g in zip(params.values(), grads):
                p.grad = g
            optimizer.step()
            epoch_losses.append(losses.detach())  # host copy once per epoch, not per batch
            if progress is not None:
                progress((epoch + (i + 1) / len(batches)) / epochs,
                         f"{k_total} support networks together, epoch {epoch + 1}/{epochs}")
        for curve, mean in zip(curves, torch.stack(epoch_losses).mean(0).tolist()):
            curve.append(mean)
    nets = []
    for k in range(k_total):
        net = copy.deepcopy(base)
        net.load_state_dict({**{n: p[k].detach() for n, p in params.items()},
                             **{n: b[k] for n, b in buffers.items()}})
        nets.append(net.eval().requires_grad_(False))
    return nets, curves


def train_support_networks(model: LoadedModel, data: TrainingData, alphas: Sequence[float] = DEFAULT_ALPHAS, *,
                           lr: float = DEFAULT_LR, epochs: int = DEFAULT_EPOCHS, seed: int = DEFAULT_SEED,
                           batch_size: int = DEFAULT_BATCH_SIZE, mode: str = "auto", progress: Progress | None = None,
                           cache_dir: str | os.PathLike | None = None) -> SupportNetworks:
    """One support regression network per α > 0, read from disk when trained before with the same settings.

    ``mode``: "batched" (all copies in one vmapped pass), "sequential" (one copy after the other,
    K times less memory; also the fallback when batched runs out of memory) or "auto": batched on
    CUDA, sequential on the CPU, where ``bench/bench_ig_rig.py`` measured the vmapped pass at only
    0.71–0.77× the per-network throughput of plain training (embedded net, ResNet-18; 2 idle cores).
    """
    alphas = checked_alphas(alphas)
    settings = {"lr": lr, "epochs": epochs, "batch_size": batch_size, "seed": seed}
    lr, epochs, batch_size, seed = (TRAINING[k].parse(k, v) for k, v in settings.items())
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {', '.join(MODES)}; got '{mode}'.")
    if mode == "auto":
        mode = "batched" if model.device.type == "cuda" else "sequential"
    key = store.support_key(model, data, alphas, lr, epochs, seed, batch_size)
    directory = (Path(cache_dir) if cache_dir else store.cache_root()) / key
    trained = [a for a in alphas if a != 0]
    with model.lock:
        template = model.module.state_dict()
    stored, damaged = store.load(directory, trained, model.device, template)
    if stored is not None:
        networks = {a: _private_copy(model, state) for a, state in stored.states.items()}
        return SupportNetworks(data.classes, alphas, networks, stored.curves, key, directory, True, mode)

    logits = batched_logits(model.module, data.images, Engine(model.device))
    networks, curves = {}, {}
    if trained:
        targets = torch.stack([modified_targets(logits, data.labels, data.classes, a) for a in trained])
        base = _private_copy(model)
        kwargs = dict(lr=lr, epochs=epochs, batch_size=batch_size, seed=seed, device=model.device, progress=progress)
        with oom_guard(model.device, "training the support networks"), _conv_backward_without_onednn(model.device):
            try:
                fit = _fit_batched if mode == "batched" else _fit_sequential
                nets, fitted = fit(base, data.images, targets, **kwargs)
            except Exception as err:  # noqa: BLE001 - batched falls back to sequential on OOM only
                if mode != "batched" or not is_oom(err):
                    raise
                if model.device.type == "cuda":
                    torch.cuda.empty_cache()
                mode = "sequential"
                nets, fitted = _fit_sequential(base, data.images, targets, **kwargs)
        diverged = [f"{a:g}" for a, curve in zip(trained, fitted) if not all(math.isfinite(v) for v in curve)]
        if diverged:  # never store or explain with a network whose loss went to NaN
            raise ParameterError(f"Training diverged (the loss became NaN or infinite) for α = {', '.join(diverged)}; "
                                 "try a lower learning rate.")
        for a, net, target, curve in zip(trained, nets, targets, fitted):
            start = float(nn.functional.mse_loss(logits, target))  # the copy starts as the classifier
            networks[a], curves[a] = net, [start, *curve]
    not_stored = store.save(directory, networks, curves, {"alphas": alphas, "lr": lr, "epochs": epochs,
                                                          "seed": seed, "classes": list(data.classes),
                                                          "source": data.source, "n": len(data.labels)})
    notices = tuple(n for n in (damaged, not_stored) if n)
    for notice in notices:
        warnings.warn(notice, StoreWarning, stacklevel=2)
    return SupportNetworks(data.classes, alphas, networks, curves, key, directory, False, mode, notices)
