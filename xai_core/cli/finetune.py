"""``finetune``: fine-tune a model with a saliency loss (``xai_core.finetune``), one table row per epoch.

Training and validation images come from any evaluation source with ground truth
(``shortcut-train:SEED``, ``shortcut:SEED``, ``embedded:SEED`` or a folder); the fine-tuned
state dict is written with the model's class names, loadable by
``load_model(MODEL, checkpoint=OUT)`` and ``--checkpoint OUT``. Under
``torchrun --nproc_per_node=K -m xai_core finetune ...`` the K processes train one model with
DistributedDataParallel (``xai_core.finetune.distributed``): an effective batch is
micro-batch × accumulation × K images; rank 0 prints and writes, the other ranks print nothing.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from ..errors import ParameterError
from ..finetune import LOSS_FORMS, SALIENCY_MAPS, FinetuneConfig
from ..finetune.training import OPTIMIZERS, EpochRecord, Split
from ..model_handle import LoadedModel
from .common import (MAX_BATCH, MAX_EPOCHS, MAX_HELD_IMAGES, DATA_HELP, AddCommand, add_model_args, count,
                     library_default, load_model_from, output_path)

TRAINABLE = ("all", "head", "last_block")
TABLE_SCORES = ("accuracy", "ce", "magtr", "mangtr", "loss")
DIGITS = 4


def load_split(model: LoadedModel, source: str, n: int, option: str) -> Split:
    """(images, labels, masks) of the first ``n`` images of ``source`` (its ``select(n)``), for ``model``;
    ``n`` (given as ``option``) is bounded because the whole split is held in memory."""
    from ..evaluation.sources import open_source

    count(n, option, MAX_HELD_IMAGES)
    opened = open_source(source, model)
    if not opened.has_ground_truth:
        raise ParameterError(f"'{source}' has no ground truth (masks or boxes.csv); the saliency loss needs it.")
    batch = opened.load(opened.select(n))
    return batch.images, batch.labels, batch.masks


def epoch_rows(records: list[EpochRecord]) -> list[dict]:
    """One row per epoch: ``epoch`` (from 1) and ``SPLIT_SCORE`` for each split's ``TABLE_SCORES``."""
    rows: dict[int, dict] = {}
    for record in records:
        row = rows.setdefault(record.epoch, {"epoch": record.epoch + 1})
        row.update({f"{record.split}_{name}": round(getattr(record, name), DIGITS) for name in TABLE_SCORES})
    return list(rows.values())


def run_finetune(args: argparse.Namespace) -> list[dict]:
    """Fine-tune ``--model`` on ``--data``, scoring ``--val`` each epoch; the state dict goes to ``--out``."""
    from ..evaluation import distributed
    from ..finetune import finetune
    from ..finetune.distributed import finetune_distributed

    count(args.epochs, "--epochs", MAX_EPOCHS)
    count(args.micro_batch, "--micro-batch", MAX_BATCH)
    count(args.accumulate, "--accumulate", MAX_BATCH)
    out = output_path(args.out, ".pt")
    with distributed.session(args.device) as session:
        if not session.is_main:  # torchrun forwards every rank's stdout: the table is rank 0's alone
            sys.stdout = open(os.devnull, "w")
        model = load_model_from(argparse.Namespace(**{**vars(args), "device": str(session.device)}))
        config = FinetuneConfig(layer=args.layer or model.default_layer, form=args.loss, k1=args.k1, k2=args.k2,
                                k3=args.k3, saliency=args.saliency, optimizer=args.optimizer, lr=args.lr,
                                micro_batch=args.micro_batch, accumulate=args.accumulate,
                                trainable=args.trainable, seed=args.seed)
        config.validate()  # before any image is generated
        train = load_split(model, args.data, args.n, "--n")
        val = load_split(model, args.val, args.val_n, "--val-n")
        if session.world == 1:
            result = finetune(model, train, config, epochs=args.epochs, val=val)
        else:
            result = finetune_distributed(model, train, config, epochs=args.epochs, val=val,
                                          rank=session.rank, world=session.world)
    if not session.is_main:
        return []
    torch.save({"state_dict": {k: v.cpu() for k, v in result.module.state_dict().items()},
                "class_names": list(model.categories)}, out)
    return epoch_rows(result.records)


def add_commands(add: AddCommand) -> None:
    """Register ``finetune``."""
    p = add("finetune", run_finetune,
            "fine-tune a model with a saliency loss: one row per epoch on stdout, the state dict to --out")
    add_model_args(p)
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help=f"training images with ground truth: shortcut-train:SEED, shortcut:SEED, embedded:SEED "
                        f"or a {DATA_HELP}")
    p.add_argument("--val", required=True, metavar="SOURCE", help="validation images, the same kinds as --data")
    p.add_argument("-n", "--n", type=int, required=True,  # -n passes through torchrun, which takes --n for its --nnodes
                   help="number of training images (write -n N under torchrun)")
    p.add_argument("--val-n", type=int, required=True, help="number of validation images")
    p.add_argument("--loss", choices=LOSS_FORMS, default=library_default(FinetuneConfig, "form"))
    for k, term in (("k1", "CE"), ("k2", "1 − MAGTR"), ("k3", "MANGTR (weighted_mangtr only)")):
        p.add_argument(f"--{k}", type=float, default=library_default(FinetuneConfig, k),
                       help=f"weight of {term} in the weighted forms")
    p.add_argument("--layer", help="the saliency layer (default: the model's CAM layer)")
    p.add_argument("--saliency", choices=SALIENCY_MAPS, default=library_default(FinetuneConfig, "saliency"))
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=library_default(FinetuneConfig, "optimizer"))
    p.add_argument("--lr", type=float, default=library_default(FinetuneConfig, "lr"))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--micro-batch", type=int, default=library_default(FinetuneConfig, "micro_batch"),
                   help="images per forward pass (per process under torchrun)")
    p.add_argument("--accumulate", type=int, default=library_default(FinetuneConfig, "accumulate"),
                   help="micro-batches per optimiser step (per process under torchrun)")
    p.add_argument("--trainable", choices=TRAINABLE, default=library_default(FinetuneConfig, "trainable"))
    p.add_argument("--seed", type=int, default=library_default(FinetuneConfig, "seed"),
                   help="seed of the order of the training images")
    p.add_argument("--out", required=True, help=".pt file: the fine-tuned state dict with the class names")
