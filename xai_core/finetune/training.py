"""Fine-tuning a copy of a model with a saliency loss (``losses``), with gradient accumulation.

The shared ``LoadedModel`` is never touched: ``trainable_copy`` deep-copies its module and
trains the copy (other sessions keep explaining the original meanwhile).

- **Accumulation**: one optimiser step per A micro-batches of m images; each micro-batch's loss
  (a mean over its images) is scaled by 1/A before ``backward``, so the accumulated gradient is
  the mean over the m·A images: the update of one batch A times larger, in the memory of one
  micro-batch (exactly so for equal micro-batches and BatchNorm in eval mode).
- **BatchNorm in eval mode by default** (``freeze_batchnorm``): its running statistics and the
  normalisation of each image stay those of the pretrained model. Micro-batches are small (a few
  images when a large model is accumulated to a large effective batch), so batch statistics
  would be noisy, would differ from the effective batch's (breaking the equivalence above) and
  would overwrite running statistics the model was trained with. Its affine weights still train.
- **Trainable parameters** (``trainable``): ``"all"``; ``"head"``, the final linear layer;
  ``"last_block"``, the block that holds the saliency layer (its smallest enclosing module
  that is an element of a ``Sequential``/``ModuleList``, else the layer itself) and every
  parameter registered after it (final norm, head); or a tuple of name prefixes.
- **Device and precision**: the engine's device (else the model's); forward passes run in the
  ``optimisation`` section of the precision policy, float32 (a loss followed step by step; the
  double backward of Grad-CAM's gradient would underflow in half precision).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..engine import Engine, Progress, oom_guard
from ..errors import ParameterError
from ..instrument.capture import get_layer
from ..model_handle import LoadedModel
from .losses import check_form, saliency_loss

OPTIMIZERS = ("adam", "sgd")
Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(x N×C×H×W normalised, labels N long, masks N×H×W bool) of a data split."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that defines a fine-tuning run besides the model and the data."""
    layer: str                                   # the saliency layer (dotted module name)
    form: str = "weighted"                       # one of ``losses.LOSS_FORMS``
    k1: float = 1.0
    k2: float = 1.0
    k3: float = 1.0
    saliency: str = "gradcam"                    # or "cam"
    temperature: float | None = None             # HAGTR's smooth max; None: the plain max
    optimizer: str = "adam"
    lr: float = 1e-4
    momentum: float = 0.0                        # SGD only
    weight_decay: float = 0.0
    micro_batch: int = 16
    accumulate: int = 1
    trainable: str | tuple[str, ...] = "all"
    freeze_batchnorm: bool = True
    seed: int = 0                                # order of the training images

    def validate(self) -> None:
        """``ParameterError`` for an impossible setting."""
        check_form(self.form, self.saliency)
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(f"Unknown optimizer '{self.optimizer}'; choose one of {', '.join(OPTIMIZERS)}.")
        if self.micro_batch < 1 or self.accumulate < 1:
            raise ParameterError("The micro-batch size and the accumulation steps must be at least 1.")
        numbers = {"lr": self.lr, "k1": self.k1, "k2": self.k2, "k3": self.k3, "momentum": self.momentum,
                   "weight_decay": self.weight_decay, "temperature": self.temperature}
        for name, value in numbers.items():
            if value is not None and not math.isfinite(value):
                raise ParameterError(f"The fine-tuning setting {name} must be a finite number; got {value}.")
        if self.lr <= 0:
            raise ParameterError("The learning rate must be positive.")


@dataclass
class EpochRecord:
    """Batch-mean scores of one epoch on one split (train: as seen during the epoch's steps)."""
    epoch: int
    split: str
    accuracy: float
    ce: float
    magtr: float
    mangtr: float
    hagtr: float
    loss: float
    seconds: float


def trainable_names(module: nn.Module, trainable: str | Sequence[str], layer: str) -> list[str]:
    """Names of the parameters that train under ``trainable`` (see the module docstring)."""
    names = [name for name, _ in module.named_parameters()]
    if trainable == "all":
        return names
    if trainable == "head":
        linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ParameterError("The model has no linear head to train alone.")
        prefixes: Sequence[str] = (linears[-1],)
    elif trainable == "last_block":
        block = _enclosing_block(module, layer)
        first = next((i for i, name in enumerate(names) if _under(name, block)), None)
        if first is None:
            raise ParameterError(f"The block '{block}' holding layer '{layer}' has no parameters.")
        return names[first:]
    elif isinstance(trainable, str):
        raise ParameterError(f"Unknown trainable choice '{trainable}'; use all, head, last_block or name prefixes.")
    else:
        prefixes = tuple(trainable)
    chosen = [name for name in names if any(_under(name, prefix) for prefix in prefixes)]
    if not chosen:
        raise ParameterError(f"No parameter name starts with {', '.join(prefixes)}.")
    return chosen


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _enclosing_block(module: nn.Module, layer: str) -> str:
    parts = layer.split(".")
    for end in range(len(parts), 1, -1):
        parent = module.get_submodule(".".join(parts[:end - 1]))
        if isinstance(parent, (nn.Sequential, nn.ModuleList)):
            return ".".join(parts[:end])
    return layer


def trainable_copy(model: LoadedModel, config: FinetuneConfig, device: torch.device) -> nn.Module:
    """A deep copy of ``model.module`` on ``device`` with only the chosen parameters requiring grad."""
    get_layer(model.module, config.layer)          # an unknown layer fails here, before any copy
    module = copy.deepcopy(model.module).to(device)
    chosen = set(trainable_names(module, config.trainable, config.layer))
    for name, parameter in module.named_parameters():
        parameter.requires_grad_(name in chosen)
        parameter.grad = None
    return module


def set_train_mode(module: nn.Module, freeze_batchnorm: bool = True) -> None:
    """Train mode, with every BatchNorm back in eval mode when ``freeze_batchnorm``."""
    module.train()
    if freeze_batchnorm:
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def make_optimizer(module: nn.Module, config: FinetuneConfig) -> torch.optim.Optimizer:
    """Adam or SGD over the parameters of ``module`` that require grad."""
    parameters = [p for p in module.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _loss(module: nn.Module, batch: Split, config: FinetuneConfig, engine: Engine,
          differentiable: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    x, labels, masks = (t.to(engine.device) for t in batch)
    with engine.precision("optimisation"):
        return saliency_loss(module, x, labels, masks, layer=config.layer, form=config.form, k1=config.k1,
                             k2=config.k2, k3=config.k3, saliency=config.saliency,
                             temperature=config.temperature, differentiable=differentiable)


def finetune_step(module: nn.Module, optimizer: torch.optim.Optimizer, micro_batches: Sequence[Split],
                  config: FinetuneConfig, engine: Engine) -> dict[str, float]:
    """One optimiser step accumulated over ``micro_batches``; their mean terms (floats). Out of memory
    is a ``ResourceError`` (a forward and a double backward per micro-batch: nothing to split further)."""
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, torch.Tensor] = {}
    with oom_guard(engine.device, f"a fine-tuning step on micro-batches of {config.micro_batch} images"):
        for batch in micro_batches:
            loss, terms = _loss(module, batch, config, engine)
            (loss / len(micro_batches)).backward()
            for name, value in terms.items():
                totals[name] = totals.get(name, 0) + value / len(micro_batches)
        optimizer.step()
    return {name: float(value) for name, value in totals.items()}


def _micro_batches(split: Split, size: int, order: torch.Tensor | None = None) -> list[Split]:
    indices = torch.arange(len(split[0])) if order is None else order
    return [tuple(t[indices[i:i + size]] for t in split) for i in range(0, len(indices), size)]


def _record(epoch: int, name: str, terms: list[dict[str, float]], weights: list[int], seconds: float) -> EpochRecord:
    total = sum(weights)
    mean = {key: sum(t[key] * w for t, w in zip(terms, weights)) / total for key in terms[0]}
    return EpochRecord(epoch=epoch, split=name, accuracy=mean["accuracy"], ce=mean["ce"], magtr=mean["magtr"],
                       mangtr=mean["mangtr"], hagtr=mean["hagtr"], loss=mean["loss"], seconds=seconds)


def train_epoch(module: nn.Module, optimizer: torch.optim.Optimizer, train: Split, config: FinetuneConfig,
                engine: Engine, *, epoch: int = 0, progress: Progress | None = None,
                shard: tuple[int, int] = (0, 1)) -> EpochRecord:
    """One pass over ``train`` in a seeded shuffled order, a step per ``accumulate`` micro-batches.

    ``progress(fraction of the epoch, message)`` after each step; it may raise to stop. With
    ``shard=(rank, world)`` (``finetune.distributed``) each step spans ``accumulate × world``
    micro-batches of the same order, of which this process takes the ``rank``-th ``accumulate``;
    an incomplete last step is dropped, so that every process takes part in every step."""
    start = time.perf_counter()
    set_train_mode(module, config.freeze_batchnorm)
    order = torch.randperm(len(train[0]), generator=torch.Generator().manual_seed(config.seed + epoch))
    rank, world = shard
    if world > 1:
        order = order[:len(order) - len(order) % (config.micro_batch * config.accumulate * world)]
    batches = _micro_batches(train, config.micro_batch, order)
    per_step = config.accumulate * world
    steps = [batches[i:i + per_step][rank * config.accumulate:(rank + 1) * config.accumulate]
             for i in range(0, len(batches), per_step)]
    terms, sizes = [], []
    for done, step in enumerate(steps, start=1):
        terms.append(finetune_step(module, optimizer, step, config, engine))
        sizes.append(sum(len(b[1]) for b in step))
        if progress is not None:
            progress(done / len(steps), f"epoch {epoch + 1}: step {done}/{len(steps)}, loss {terms[-1]['loss']:.4f}")
    return _record(epoch, "train", terms, sizes, time.perf_counter() - start)


def evaluate_split(module: nn.Module, split: Split, config: FinetuneConfig, engine: Engine, *, epoch: int = 0,
                   name: str = "val") -> EpochRecord:
    """The scores of ``module`` on ``split`` in eval mode, no parameter changed, no ``.grad`` written."""
    start = time.perf_counter()
    module.eval()
    terms, sizes = [], []
    with oom_guard(engine.device, f"scoring micro-batches of {config.micro_batch} images"):
        for batch in _micro_batches(split, config.micro_batch):
            _, batch_terms = _loss(module, batch, config, engine, differentiable=False)
            terms.append({key: float(value) for key, value in batch_terms.items()})
            sizes.append(len(batch[1]))
    return _record(epoch, name, terms, sizes, time.perf_counter() - start)


@dataclass
class FinetuneResult:
    """The fine-tuned copy and its learning curves (a train and, with validation data, a val record per epoch)."""
    module: nn.Module
    records: list[EpochRecord]


def finetune(model: LoadedModel, train: Split, config: FinetuneConfig, *, epochs: int, val: Split | None = None,
             engine: Engine | None = None, progress: Progress | None = None,
             on_epoch: Callable[[list[EpochRecord]], None] | None = None) -> FinetuneResult:
    """Fine-tune a copy of ``model`` for ``epochs`` on ``train``, scoring ``val`` after each epoch.

    ``progress(fraction of the run, message)`` may raise to stop (the exception propagates; the
    shared model is untouched either way); ``on_epoch`` receives the records so far."""
    config.validate()
    if epochs < 1:
        raise ParameterError("Fine-tuning needs at least one epoch.")
    engine = engine or Engine(model.device)
    module = trainable_copy(model, config, engine.device)
    optimizer = make_optimizer(module, config)
    records: list[EpochRecord] = []
    for epoch in range(epochs):
        def epoch_progress(fraction: float, message: str, epoch: int = epoch) -> None:
            if progress is not None:
                progress((epoch + fraction) / epochs, message)
        records.append(train_epoch(module, optimizer, train, config, engine, epoch=epoch, progress=epoch_progress))
        if val is not None:
            records.append(evaluate_split(module, val, config, engine, epoch=epoch))
        if on_epoch is not None:
            on_epoch(list(records))
    module.eval()
    return FinetuneResult(module=module, records=records)
