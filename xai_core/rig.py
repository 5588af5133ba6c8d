"""Reinforced Integrated Gradients (RIG; Mazini Rodrigues, Boutry, Najman — "Gradients Intégrés
Renforcés", English version GAD, arXiv 2401.14434).

The paper's three steps, as implemented here:

1. Two classes A, B. On the training images, take the classifier's pre-softmax logits; for
   images of A subtract α from the *B* logit, for images of B subtract α from the *A* logit,
   leave every other logit unchanged (§4.1: "modifié les probabilités non normalisées d'être un
   chien sur les échantillons D_chat en soustrayant α_chat ... α_dog des probabilités d'être un
   chat des échantillons D_dog"). ``modified_targets``.
2. For each α, a support *regression* network: a copy initialised from the classifier, linear
   outputs, MSE against those targets, Adam (lr 4e-5, 10 epochs in the paper). ``train_support_networks``.
   α = 0 is the classifier itself: its targets are the classifier's own outputs, so the copy
   already sits at the loss minimum — which is why the paper counts four support networks and
   five maps for α ∈ {0, 2, 4, 6, 8} (§4.3, Fig. 4, §5.1).
   The whole network stays in eval mode while training: BatchNorm keeps the classifier's
   running statistics (the targets were computed with them, and small two-class batches would
   skew them) and dropout is off (the targets are deterministic outputs, not labels).
3. IG (black baseline) on every network for both classes; keep the features present in every
   map. The paper does not say how "present" is decided; our reading: a pixel is important in
   a map when its (channel-summed) attribution is ≥ τ × that map's maximum, negatives dropped,
   and the RIG region is the intersection over all networks. ``rig_explain``.

Then occlusion (§5.2): black out the chosen region and read the pre-softmax logits of both
classes; here compared against an equally large region taken from plain IG. ``occlusion_logits``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .engine import Engine, Progress, is_oom
from .errors import ParameterError
from .methods.integrated_gradients import integrated_gradients, model_baselines, reduce_channels
from .model_handle import LoadedModel

DEFAULT_ALPHAS = (0.0, 2.0, 4.0, 6.0, 8.0)
DEFAULT_LR = 4e-5
DEFAULT_EPOCHS = 10
DEFAULT_TAU = 0.75
_FORMAT_VERSION = 1
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


# ------------------------------------------------------------------ training data
@dataclass
class TrainingData:
    images: torch.Tensor        # N×C×H×W, normalised for the model, on the CPU
    labels: torch.Tensor        # N, the model's class index of each image (one of ``classes``)
    classes: tuple[int, int]
    source: str                 # human-readable origin

    def __post_init__(self) -> None:
        counts = [int((self.labels == c).sum()) for c in self.classes]
        if min(counts) == 0:
            raise ParameterError(f"RIG needs images of both classes; got {counts[0]} and {counts[1]}.")

    @property
    def identity(self) -> str:
        """A digest of the exact tensors: same digest ⇔ same training set."""
        digest = hashlib.sha256(self.images.contiguous().numpy().tobytes())
        digest.update(self.labels.numpy().astype(np.int64).tobytes())
        return digest.hexdigest()


def embedded_data(model: LoadedModel, classes: Sequence[int], seed: int, n: int) -> TrainingData:
    """``n`` freshly generated images of the embedded dataset's two ``classes`` (seeded)."""
    from . import dataset

    if list(model.categories) != list(dataset.CLASSES):
        raise ParameterError("The embedded dataset trains only a model with its classes; give a folder of images.")
    batch = dataset.samples(seed, n, classes=list(classes))
    images = dataset.normalize(np.stack([s.image for s in batch]), model.mean, model.std)
    return TrainingData(images, torch.tensor([s.label for s in batch], dtype=torch.long),
                        (int(classes[0]), int(classes[1])), f"embedded dataset, seed {seed}, n {n}")


def folder_data(model: LoadedModel, directory: str | os.PathLike,
                classes: Sequence[int]) -> tuple[TrainingData, TrainingData]:
    """(train, validation) from an ImageFolder layout ``directory/<class>/*.png``.

    Each class's subfolder is named by the class name (case-insensitive) or its index.
    Every fifth image of each class (sorted by name) is held out for validation.
    """
    from .imageio import load_image

    root = Path(directory)
    if not root.is_dir():
        raise ParameterError(f"Training folder '{root}' does not exist.")
    subfolders = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    parts: dict[str, list[tuple[torch.Tensor, int]]] = {"train": [], "val": []}
    for c in classes:
        folder = subfolders.get(model.categories[c].lower()) or subfolders.get(str(c))
        if folder is None:
            raise ParameterError(f"'{root}' has no subfolder named '{model.categories[c]}' or '{c}' "
                                 f"(found: {', '.join(sorted(subfolders)) or 'none'}).")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if len(files) < 2:
            raise ParameterError(f"'{folder}' needs at least two images.")
        for i, path in enumerate(files):
            parts["val" if i % 5 == 4 else "train"].append((model.preprocess(load_image(str(path))), int(c)))
    pair = (int(classes[0]), int(classes[1]))
    return tuple(TrainingData(torch.stack([x for x, _ in rows]), torch.tensor([y for _, y in rows]), pair,
                              f"{root} ({name})") for name, rows in parts.items())  # type: ignore[return-value]


# ------------------------------------------------------------------ targets
def modified_targets(logits: torch.Tensor, labels: torch.Tensor, classes: Sequence[int], alpha: float) -> torch.Tensor:
    """The paper's regression targets: images of A get α off their B logit, images of B α off their A logit."""
    a, b = classes
    targets = logits.clone()
    targets[labels == a, b] -= alpha
    targets[labels == b, a] -= alpha
    return targets


def batched_logits(module: nn.Module, images: torch.Tensor, engine: Engine) -> torch.Tensor:
    """fp32 pre-softmax outputs of ``module`` on ``images`` (N×C×H×W, on the CPU), returned on the CPU."""
    def logits(start: int, stop: int) -> torch.Tensor:
        with torch.no_grad(), engine.autocast(False):  # regression targets and logit tables stay exact
            return module(images[start:stop].to(engine.device)).float()

    return engine.map_cat(logits, len(images), key=f"rig-logits:{type(module).__name__}").cpu()


# ------------------------------------------------------------------ support networks
@dataclass
class SupportNetworks:
    classes: tuple[int, int]
    alphas: list[float]                        # as requested (0 included when asked)
    networks: dict[float, nn.Module]           # trained α > 0 → network (eval mode, on the model's device)
    curves: dict[float, list[float]]           # α → [MSE before training, mean MSE of each epoch]
    key: str
    directory: Path
    loaded_from_disk: bool
    mode: str                                  # "batched" or "sequential"

    def modules(self, model: LoadedModel) -> list[tuple[str, nn.Module]]:
        """Every network RIG looks at, the classifier first (α = 0 is the classifier itself)."""
        return [("classifier", model.module)] + [(f"α={a:g}", self.networks[a]) for a in self.alphas if a != 0]


def cache_root() -> Path:
    """``$XAI_LAB_CACHE/rig`` or ``~/.cache/xai_lab/rig``."""
    base = os.environ.get("XAI_LAB_CACHE") or Path.home() / ".cache" / "xai_lab"
    return Path(base) / "rig"


def weights_digest(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def support_key(model: LoadedModel, data: TrainingData, alphas: Sequence[float], lr: float, epochs: int,
                seed: int, batch_size: int) -> str:
    """sha256 of everything that determines the trained networks."""
    facts = {"version": _FORMAT_VERSION, "arch": model.arch, "weights": weights_digest(model.module),
             "classes": list(data.classes), "data": data.identity, "n": len(data.labels),
             "alphas": [float(a) for a in alphas], "lr": lr, "epochs": epochs, "seed": seed,
             "batch_size": batch_size}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


Fitted = tuple[list[nn.Module], list[list[float]]]  # trained networks, their per-epoch mean MSE


def _private_copy(model: LoadedModel) -> nn.Module:
    with model.lock:
        module = copy.deepcopy(model.module)
    return module.eval()


def _batches(n: int, batch_size: int, generator: torch.Generator):
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
                with torch.autocast(device.type, enabled=False):
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
            with torch.autocast(device.type, enabled=False):
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
                           lr: float = DEFAULT_LR, epochs: int = DEFAULT_EPOCHS, seed: int = 0, batch_size: int = 32,
                           mode: str = "auto", progress: Progress | None = None,
                           cache_dir: str | os.PathLike | None = None) -> SupportNetworks:
    """One support regression network per α > 0, read from disk when trained before with the same settings.

    ``mode``: "batched" (all copies in one vmapped pass), "sequential" (one copy after the other,
    K times less memory; also the fallback when batched runs out of memory) or "auto": batched on
    CUDA, sequential on the CPU, where ``bench/bench_ig_rig.py`` measured the vmapped pass at only
    0.71–0.77× the per-network throughput of plain training (embedded net, ResNet-18; 2 idle cores).
    """
    alphas = [float(a) for a in alphas]
    if not alphas or len(set(alphas)) != len(alphas) or min(alphas) < 0:
        raise ParameterError("α values must be distinct, non-negative numbers (e.g. 0,2,4,6,8).")
    if epochs < 1 or not 0 < lr < 1 or batch_size < 1:
        raise ParameterError("Training needs epochs ≥ 1, 0 < lr < 1 and batch size ≥ 1.")
    if mode not in ("auto", "sequential", "batched"):
        raise ParameterError("mode must be 'auto', 'sequential' or 'batched'.")
    if mode == "auto":
        mode = "batched" if model.device.type == "cuda" else "sequential"
    key = support_key(model, data, alphas, lr, epochs, seed, batch_size)
    directory = Path(cache_dir) / key if cache_dir else cache_root() / key
    trained = [a for a in alphas if a != 0]
    stored = _load(model, directory, trained)
    if stored is not None:
        networks, curves = stored
        return SupportNetworks(data.classes, alphas, networks, curves, key, directory, True, mode)

    logits = batched_logits(model.module, data.images, Engine(model.device))
    targets = torch.stack([modified_targets(logits, data.labels, data.classes, a) for a in trained]) \
        if trained else torch.empty(0)
    networks, curves = {}, {}
    if trained:
        base = _private_copy(model)
        kwargs = dict(lr=lr, epochs=epochs, batch_size=batch_size, seed=seed, device=model.device, progress=progress)
        try:
            fit = _fit_batched if mode == "batched" else _fit_sequential
            nets, fitted = fit(base, data.images, targets, **kwargs)
        except RuntimeError as err:
            if mode != "batched" or not is_oom(err):
                raise
            if model.device.type == "cuda":
                torch.cuda.empty_cache()
            mode = "sequential"
            nets, fitted = _fit_sequential(base, data.images, targets, **kwargs)
        for a, net, target, curve in zip(trained, nets, targets, fitted):
            start = float(nn.functional.mse_loss(logits, target))  # the copy starts as the classifier
            networks[a], curves[a] = net, [start, *curve]
    _store(directory, networks, curves, data, alphas, lr, epochs, seed)
    return SupportNetworks(data.classes, alphas, networks, curves, key, directory, False, mode)


def _weights_file(directory: Path, alpha: float) -> Path:
    return directory / f"alpha_{alpha:g}.pt"


def _store(directory: Path, networks: dict[float, nn.Module], curves: dict[float, list[float]],
           data: TrainingData, alphas: list[float], lr: float, epochs: int, seed: int) -> None:
    """Write into a temporary sibling, then rename: a half-written set is never read."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".tmp-"))
    for a, net in networks.items():
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, _weights_file(staging, a))
    meta = {"alphas": alphas, "curves": {f"{a:g}": c for a, c in curves.items()}, "lr": lr, "epochs": epochs,
            "seed": seed, "classes": list(data.classes), "source": data.source, "n": len(data.labels)}
    (staging / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        staging.rename(directory)
    except OSError:  # another session stored the same set meanwhile: keep theirs
        shutil.rmtree(staging, ignore_errors=True)


def _load(model: LoadedModel, directory: Path, trained: list[float]) -> tuple[dict, dict] | None:
    meta_file = directory / "meta.json"
    if not meta_file.is_file() or not all(_weights_file(directory, a).is_file() for a in trained):
        return None
    meta = json.loads(meta_file.read_text())
    networks, curves = {}, {}
    for a in trained:
        net = _private_copy(model)
        net.load_state_dict(torch.load(_weights_file(directory, a), map_location=model.device, weights_only=True))
        networks[a] = net.requires_grad_(False)
        curves[a] = meta["curves"][f"{a:g}"]
    return networks, curves


# ------------------------------------------------------------------ explanation
def important_regions(maps: torch.Tensor, tau: float) -> torch.Tensor:
    """…×H×W maps → where the attribution is ≥ τ × the map's maximum (negatives dropped)."""
    positive = maps.clamp(min=0)
    peak = positive.amax(dim=(-2, -1), keepdim=True)
    return (positive >= tau * peak) & (peak > 0)


@dataclass
class RigExplanation:
    classes: tuple[int, int]
    network_names: list[str]          # "classifier", "α=2", ...
    network_maps: np.ndarray          # K+1 × 2 × H×W channel-summed IG (signed)
    important: np.ndarray             # K+1 × 2 × H×W bool
    region: np.ndarray                # 2×H×W bool: important in every network's map
    completeness_gap: np.ndarray      # K+1 × 2
    tau: float
    extras: dict = field(default_factory=dict)

    @property
    def ig(self) -> np.ndarray:
        """The classifier's IG maps, 2×H×W."""
        return self.network_maps[0]

    @property
    def rig(self) -> np.ndarray:
        """The classifier's positive IG inside the RIG region, 2×H×W."""
        return np.clip(self.ig, 0, None) * self.region

    @property
    def area(self) -> dict[str, np.ndarray]:
        """Share of the image each selection keeps, per class."""
        return {"ig_important": self.important[0].mean(axis=(-2, -1)), "rig": self.region.mean(axis=(-2, -1))}

    @property
    def occlusion_region(self) -> np.ndarray:
        """H×W: the RIG regions of both classes together (what separates the pair)."""
        return self.region.any(0)

    @property
    def ig_scores(self) -> np.ndarray:
        """H×W ranking for the equally large plain-IG region: each class's positive IG over its max,
        then the larger of the two classes."""
        positive = np.clip(self.ig, 0, None)
        peak = positive.max(axis=(-2, -1), keepdims=True)
        return (positive / np.where(peak > 0, peak, 1)).max(0)


def rig_explain(model: LoadedModel, x: torch.Tensor, supports: SupportNetworks, *, tau: float = DEFAULT_TAU,
                steps: int = 32, rule: str = "gausslegendre", engine: Engine | None = None,
                progress: Progress | None = None) -> RigExplanation:
    """IG (black baseline) of both classes on every network, and the region important in all of them."""
    if not 0 < tau <= 1:
        raise ParameterError("τ must be in (0, 1].")
    engine = engine or Engine(model.device)
    x = x.to(model.device, torch.float32)
    baselines = model_baselines(model, x, "black")
    named = supports.modules(model)
    maps, gaps = [], []
    for k, (name, module) in enumerate(named):
        def step_progress(fraction: float, message: str, k=k) -> None:
            if progress is not None:
                progress((k + fraction) / len(named), message)

        result = integrated_gradients(module, x, baselines, list(supports.classes), steps=steps, rule=rule,
                                      engine=engine, progress=step_progress, message=f"IG on {name}")
        maps.append(reduce_channels(result.attributions, "sum"))
        gaps.append(result.completeness_gap)
    stacked = torch.stack(maps)
    important = important_regions(stacked, tau)
    return RigExplanation(supports.classes, [n for n, _ in named], stacked.cpu().numpy(),
                          important.cpu().numpy(), important.all(0).cpu().numpy(),
                          torch.stack(gaps).cpu().numpy(), tau)


def top_region(scores: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` highest-scoring pixels of an H×W map, as a mask."""
    mask = np.zeros(scores.size, dtype=bool)
    if size > 0:
        mask[np.argsort(scores, axis=None, kind="stable")[::-1][:size]] = True
    return mask.reshape(scores.shape)


def occlusion_logits(model: LoadedModel, x: torch.Tensor, classes: Sequence[int], region: np.ndarray,
                     ig_scores: np.ndarray) -> np.ndarray:
    """3×2 pre-softmax logits of ``classes``: original, ``region`` blacked out, and the equally
    large top region of ``ig_scores`` blacked out (black = the IG baseline)."""
    x = x.to(model.device, torch.float32)
    black = model.normalized_constant(0.0).to(x.device)
    masks = [np.zeros_like(region, dtype=bool), region.astype(bool), top_region(ig_scores, int(region.sum()))]
    images = torch.stack([torch.where(torch.as_tensor(m, device=x.device), black, x) for m in masks])
    logits = batched_logits(model.module, images, Engine(model.device))
    return logits[:, list(classes)].numpy()


# ------------------------------------------------------------------ tables
@torch.no_grad()
def accuracy_table(model: LoadedModel, supports: SupportNetworks, train: TrainingData, val: TrainingData) -> list[dict]:
    """The paper's Table 1 layout: per-class and total accuracy on train and validation, one row
    per network. A prediction is the larger of the pair's two logits (the paper's classifier is binary)."""
    a, b = train.classes
    engine = Engine(model.device)
    rows = []
    for name, module in supports.modules(model):
        row: dict = {"network": name}
        for split, data in (("train", train), ("val", val)):
            logits = batched_logits(module, data.images, engine)
            predicted = torch.where(logits[:, b] > logits[:, a], b, a)
            hit = predicted == data.labels
            for c in (a, b):
                row[f"{split} {model.categories[c]}"] = 100 * float(hit[data.labels == c].float().mean())
            row[f"{split} total"] = 100 * float(hit.float().mean())
        rows.append(row)
    return rows


def part_share_report(model: LoadedModel, supports: SupportNetworks, *, seed: int, n: int, tau: float = DEFAULT_TAU,
                      steps: int = 32, engine: Engine | None = None, progress: Progress | None = None) -> dict:
    """On ``n`` freshly generated embedded images of the pair (``seed`` unseen in training): how
    much attribution falls inside the discriminative part, for IG and for RIG, each image
    explained for its own class.

    ``ig_share``/``rig_share``: positive attribution inside ``part_mask`` over all positive
    attribution (mean over images; RIG only over images whose region is not empty);
    ``*_precision``: share of the selected pixels that lie on the part — RIG region vs the
    equally large top plain-IG region; ``part_area``: the part's share of the image (chance level);
    ``margin_*``: own-class logit minus the other class's logit — original, with the RIG regions
    blacked out, with an equally large top-IG region blacked out (``occlusion_logits``);
    ``flipped_*``: share of images whose pair decision changes under that occlusion.
    """
    from . import dataset

    engine = engine or Engine(model.device)
    rows = []
    for found, sample in enumerate(dataset.samples(seed, n, classes=list(supports.classes)), start=1):
        x = dataset.normalize(sample.image[None], model.mean, model.std)[0]
        explanation = rig_explain(model, x, supports, tau=tau, steps=steps, engine=engine)
        own = supports.classes.index(sample.label)
        part = np.asarray(sample.part_mask, dtype=bool)
        ig_positive = np.clip(explanation.ig[own], 0, None)
        rig_map = explanation.rig[own]
        region = explanation.region[own]
        ig_top = top_region(ig_positive, int(region.sum()))
        logits = occlusion_logits(model, x, supports.classes, explanation.occlusion_region, explanation.ig_scores)
        margins = logits[:, own] - logits[:, 1 - own]
        rows.append({
            "margin_original": float(margins[0]), "margin_rig_occluded": float(margins[1]),
            "margin_ig_occluded": float(margins[2]),
            "flipped_rig": float((margins[1] < 0) != (margins[0] < 0)),
            "flipped_ig": float((margins[2] < 0) != (margins[0] < 0)),
            "ig_share": float(ig_positive[part].sum() / max(ig_positive.sum(), 1e-12)),
            "rig_share": float(rig_map[part].sum() / rig_map.sum()) if rig_map.sum() > 0 else np.nan,
            "rig_precision": float(part[region].mean()) if region.any() else np.nan,
            "ig_precision": float(part[ig_top].mean()) if region.any() else np.nan,
            "rig_area": float(region.mean()),
            "part_area": float(part.mean()),
        })
        if progress is not None:
            progress(found / n, f"held-out image {found}/{n}")
    table = {key: np.array([r[key] for r in rows]) for key in rows[0]}
    return {"n": n, "seed": seed, "tau": tau, "empty_rig_regions": int(np.isnan(table["rig_share"]).sum()),
            **{f"mean_{key}": float(np.nanmean(values)) if not np.isnan(values).all() else None
               for key, values in table.items()},
            "per_image": rows}
