"""Trained support networks on disk, under a hash of everything that determines them.

``$XAI_LAB_CACHE/rig/<key>/`` holds one ``alpha_<α>.pt`` state dict per trained network and
``meta.json`` (settings, learning curves, data source). A set is written into a temporary
sibling and renamed into place, so a half-written set is never read, and two sessions that
train the same set at once keep the first one stored.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..model_handle import LoadedModel
from .data import TrainingData

FORMAT_VERSION = 1

StateDict = dict[str, torch.Tensor]


def cache_root() -> Path:
    """``$XAI_LAB_CACHE/rig`` or ``~/.cache/xai_lab/rig``."""
    base = os.environ.get("XAI_LAB_CACHE") or Path.home() / ".cache" / "xai_lab"
    return Path(base) / "rig"


def weights_digest(module: nn.Module) -> str:
    """sha256 of a module's state dict (names and exact values)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def support_key(model: LoadedModel, data: TrainingData, alphas: Sequence[float], lr: float, epochs: int,
                seed: int, batch_size: int) -> str:
    """sha256 of everything that determines the trained networks."""
    facts = {"version": FORMAT_VERSION, "arch": model.arch, "weights": weights_digest(model.module),
             "classes": list(data.classes), "data": data.identity, "n": len(data.labels),
             "alphas": [float(a) for a in alphas], "lr": lr, "epochs": epochs, "seed": seed,
             "batch_size": batch_size}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _weights_file(directory: Path, alpha: float) -> Path:
    return directory / f"alpha_{alpha:g}.pt"


def save(directory: Path, networks: dict[float, nn.Module], curves: dict[float, list[float]], meta: dict) -> None:
    """Write the networks' weights, their curves and ``meta`` as one set (atomically)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".tmp-"))
    for a, net in networks.items():
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, _weights_file(staging, a))
    meta = {**meta, "curves": {f"{a:g}": c for a, c in curves.items()}}
    (staging / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        staging.rename(directory)
    except OSError:  # another session stored the same set meanwhile: keep theirs
        shutil.rmtree(staging, ignore_errors=True)


def load(directory: Path, alphas: Sequence[float],
         device: torch.device) -> tuple[dict[float, StateDict], dict[float, list[float]]] | None:
    """The stored state dicts and curves of ``alphas``, or None when the set is not (fully) there."""
    meta_file = directory / "meta.json"
    if not meta_file.is_file() or not all(_weights_file(directory, a).is_file() for a in alphas):
        return None
    curves = json.loads(meta_file.read_text())["curves"]
    states = {a: torch.load(_weights_file(directory, a), map_location=device, weights_only=True) for a in alphas}
    return states, {a: curves[f"{a:g}"] for a in alphas}
