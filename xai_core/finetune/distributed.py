"""Fine-tuning over several processes with ``DistributedDataParallel`` (one process per GPU, or per CPU slot).

``finetune_distributed`` is ``training.finetune`` for a process of a ``torch.distributed`` group
(``xai_core.evaluation.distributed.session`` joins it under torchrun: gloo on the CPU, NCCL on
CUDA). Every process holds the same copy (DDP broadcasts rank 0's weights at wrapping) and the
same seeded order of the training images; an effective batch is micro-batch × accumulation ×
processes images, of which each process takes its ``accumulate`` micro-batches
(``train_epoch(shard=...)``). DDP averages the gradients over the processes, so a step is that
of one process accumulating ``accumulate × processes`` micro-batches of the same images (exactly
so for BatchNorm in eval mode, the default). The images of an incomplete last effective batch
are left out of the epoch. Each process scores its share of the validation images (every
world-th one); the epoch's records are the image-weighted means over all processes.

The saliency layer is captured through the wrapper (``module.`` + its name): the forward pass
must go through DDP for the backward pass to average gradients.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from ..engine import Engine
from ..errors import ParameterError
from ..model_handle import LoadedModel
from .training import (EpochRecord, FinetuneConfig, FinetuneResult, Split, evaluate_split, make_optimizer,
                       train_epoch, trainable_copy)

SCORES = ("accuracy", "ce", "magtr", "mangtr", "hagtr", "loss")
"""The ``EpochRecord`` fields averaged over the processes."""


def mean_over_processes(record: EpochRecord, images: int) -> EpochRecord:
    """``record`` (the mean over this process's ``images``) as the image-weighted mean over every process."""
    import torch.distributed as dist

    totals = torch.tensor([getattr(record, name) * images for name in SCORES] + [images], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        totals = totals.cuda()
    dist.all_reduce(totals)
    totals = totals.cpu()
    means = {name: float(totals[i] / totals[-1]) for i, name in enumerate(SCORES)}
    return dataclasses.replace(record, **means)


def finetune_distributed(model: LoadedModel, train: Split, config: FinetuneConfig, *, epochs: int,
                         rank: int, world: int, val: Split | None = None, engine: Engine | None = None,
                         on_epoch: Callable[[list[EpochRecord]], None] | None = None) -> FinetuneResult:
    """Fine-tune a copy of ``model`` as process ``rank`` of ``world`` (the group already initialised).

    Every process passes the same ``train`` and ``val``; each returns the same module and records."""
    config.validate()
    if epochs < 1:
        raise ParameterError("Fine-tuning needs at least one epoch.")
    effective = config.micro_batch * config.accumulate * world
    if len(train[0]) < effective:
        raise ParameterError(f"{len(train[0])} training images do not fill one effective batch of {effective} "
                             f"(micro-batch × accumulation × {world} processes).")
    if val is not None and len(val[0]) < world:
        raise ParameterError(f"{len(val[0])} validation images cannot be shared out between {world} processes.")
    engine = engine or Engine(model.device)
    module = trainable_copy(model, config, engine.device)
    wrapped = nn.parallel.DistributedDataParallel(
        module, device_ids=[engine.device.index] if engine.device.type == "cuda" else None)
    optimizer = make_optimizer(module, config)
    through_wrapper = dataclasses.replace(config, layer=f"module.{config.layer}")
    trained_images = len(train[0]) - len(train[0]) % effective
    val_share = None if val is None else tuple(t[rank::world] for t in val)
    records: list[EpochRecord] = []
    for epoch in range(epochs):
        record = train_epoch(wrapped, optimizer, train, through_wrapper, engine, epoch=epoch, shard=(rank, world))
        records.append(mean_over_processes(record, trained_images // world))
        if val_share is not None:
            record = evaluate_split(module, val_share, config, engine, epoch=epoch)
            records.append(mean_over_processes(record, len(val_share[0])))
        if on_epoch is not None:
            on_epoch(list(records))
    module.eval()
    return FinetuneResult(module=module, records=records)
