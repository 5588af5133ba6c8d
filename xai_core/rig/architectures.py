"""RIG on several architectures at once: the paper reports each of its tables for two classifiers
(ResNet-18 and VGG16) on the same pair of classes.

The pair is named in the first model and matched by class name, case-insensitively, in every
other one (their indices may differ). Each model gets its own training images (its own
preprocessing), its own support networks — stored under a key that includes its architecture
and weights (``store.support_key``), so two architectures never share a stored set — and its
own explanation of the same image, its occlusion logits (Table 3) and its accuracy table (Table 1).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from ..engine import Progress
from ..errors import ParameterError
from ..model_handle import LoadedModel
from .data import TrainingData, class_pair, training_sets
from .defaults import DEFAULT_ALPHAS, DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_N, DEFAULT_SEED, DEFAULT_STEPS, DEFAULT_TAU
from .evaluation import accuracy_table
from .explain import RigExplanation, check_tau, occlusion_logits, rig_explain
from .training import SupportNetworks, train_support_networks

TRAINING_SHARE = 0.8  # of each architecture's progress span: training, then explaining


def matched_pair(models: Sequence[LoadedModel], classes: Sequence[int | str]) -> list[tuple[int, int]]:
    """The pair in each model's own indices: named (or indexed) in the first model, matched by
    exact name, case-insensitively, in the others."""
    if not models:
        raise ParameterError("RIG needs at least one model.")
    first = class_pair(models[0], classes)
    names = [models[0].categories[c].strip().lower() for c in first]
    pairs = [first]
    for model in models[1:]:
        own = [c.strip().lower() for c in model.categories]
        missing = [models[0].categories[c] for c, name in zip(first, names) if name not in own]
        if missing:
            raise ParameterError(f"{model.name} has no class named {' or '.join(repr(m) for m in missing)}; "
                                 "the pair must exist in every model (matched by name).")
        pairs.append((own.index(names[0]), own.index(names[1])))
    return pairs


def architecture_labels(models: Sequence[LoadedModel]) -> list[str]:
    """One distinct label per model: its name, numbered from the second occurrence of a repeated name."""
    labels, seen = [], {}
    for model in models:
        seen[model.name] = seen.get(model.name, 0) + 1
        labels.append(model.name if seen[model.name] == 1 else f"{model.name}_{seen[model.name]}")
    return labels


@dataclass
class ArchitectureRig:
    """Everything RIG reports for one architecture: its data, networks, maps and both tables."""
    label: str
    model: LoadedModel
    train: TrainingData
    val: TrainingData
    supports: SupportNetworks
    explanation: RigExplanation
    logits: np.ndarray          # 3×2 pre-softmax logits: original, RIG-occluded, IG-occluded (Table 3)
    accuracy: list[dict]        # ``accuracy_table`` rows (Table 1)


def _span(progress: Progress | None, start: float, width: float, prefix: str) -> Progress | None:
    """``progress`` restricted to [start, start + width] of the whole bar, messages prefixed."""
    if progress is None:
        return None
    return lambda fraction, message="": progress(start + width * fraction, f"{prefix}: {message}")


def rig_architectures(models: Sequence[LoadedModel], classes: Sequence[int | str], image: Image.Image, *,
                      folder: str | os.PathLike | None = None, seed: int = DEFAULT_SEED, n: int = DEFAULT_N,
                      alphas: Sequence[float] = DEFAULT_ALPHAS, lr: float = DEFAULT_LR, epochs: int = DEFAULT_EPOCHS,
                      tau: float = DEFAULT_TAU, steps: int = DEFAULT_STEPS, cache_dir: str | os.PathLike | None = None,
                      progress: Progress | None = None) -> list[ArchitectureRig]:
    """RIG with the same settings on every model for the same pair and ``image``, one result per model."""
    check_tau(tau)
    pairs = matched_pair(models, classes)
    results = []
    for i, (label, model, pair) in enumerate(zip(architecture_labels(models), models, pairs)):
        train, val = training_sets(model, pair, folder=folder, seed=seed, n=n)
        supports = train_support_networks(model, train, alphas, lr=lr, epochs=epochs, seed=seed, cache_dir=cache_dir,
                                          progress=_span(progress, i / len(models), TRAINING_SHARE / len(models),
                                                         label))
        x = model.preprocess(image)
        explanation = rig_explain(model, x, supports, tau=tau, steps=steps,
                                  progress=_span(progress, (i + TRAINING_SHARE) / len(models),
                                                 (1 - TRAINING_SHARE) / len(models), label))
        logits = occlusion_logits(model, x, pair, explanation.occlusion_region, explanation.ig_scores)
        results.append(ArchitectureRig(label, model, train, val, supports, explanation, logits,
                                       accuracy_table(model, supports, train, val)))
    return results
