"""Trained support networks on disk, under a hash of everything that determines them.

``$XAI_LAB_CACHE/rig/<key>/`` holds one ``alpha_<α>.pt`` state dict per trained network and
``meta.json`` (settings, learning curves, data source, the sha256 of every weights file).

Written atomically: a set is written into a staging sibling ``.tmp-<pid>-…`` and renamed into
place with ``os.replace``, so a half-written set is never read, and two sessions that train the
same set at once keep the first one stored; staging folders left by killed processes are removed
on the next use. Checked when read: an entry whose meta is unreadable or incomplete, a file
missing, or a file that does not hash to its recorded digest or does not fit the model is
deleted, and the caller trains again (with a notice). A store that cannot be written (read-only
folder, a path through a regular file, a full disk) degrades to "not stored", with a notice.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from ..model_handle import LoadedModel
from .data import TrainingData

FORMAT_VERSION = 2  # 2: meta.json records each weights file's sha256
STAGING_PREFIX = ".tmp-"
STALE_STAGING_SECONDS = 6 * 3600  # older than any training: its writer is gone, whatever its pid says

StateDict = dict[str, torch.Tensor]


class DamagedEntry(Exception):
    """A stored set that cannot be used as it is (internal: ``load`` turns it into a notice)."""


@dataclass
class Entry:
    """A stored set read back: the state dict and learning curve of each α."""
    states: dict[float, StateDict]
    curves: dict[float, list[float]]


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


def _weights_name(alpha: float) -> str:
    return f"alpha_{alpha:g}.pt"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _writer_alive(staging: Path) -> bool:
    """Whether the process that named this staging folder may still be writing it."""
    try:
        pid = int(staging.name[len(STAGING_PREFIX):].split("-")[0])
        if time.time() - staging.stat().st_mtime > STALE_STAGING_SECONDS:
            return False
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except OSError:  # PermissionError: another user's live process; stat failing: let it be
        return True
    return True


def remove_stale_staging(root: Path) -> None:
    """Delete the staging folders of writers that died before renaming them into place."""
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(STAGING_PREFIX) and p.is_dir()]
    except OSError:  # no store yet, or one that cannot be listed
        return
    for staging in candidates:
        if not _writer_alive(staging):
            shutil.rmtree(staging, ignore_errors=True)


def save(directory: Path, networks: dict[float, nn.Module], curves: dict[float, list[float]],
         meta: dict) -> str | None:
    """Write the networks' weights, their curves and ``meta`` as one set, atomically.

    Returns None when stored (or when another session stored the same set first), else a notice
    saying why the set could not be stored: the networks still work, they are just not kept.
    """
    staging: Path | None = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(directory.parent)
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f"{STAGING_PREFIX}{os.getpid()}-"))
        files = {}
        for a, net in networks.items():
            path = staging / _weights_name(a)
            torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, path)
            files[path.name] = _file_digest(path)
        record = {**meta, "version": FORMAT_VERSION, "files": files,
                  "curves": {f"{a:g}": c for a, c in curves.items()}}
        (staging / "meta.json").write_text(json.dumps(record, indent=1))
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        return f"The support networks were not stored in {directory.parent} ({_reason(err)}); they work, " \
               "but the next identical request trains them again."
    try:
        os.replace(staging, directory)
    except OSError:  # another session stored the same set meanwhile: keep theirs
        shutil.rmtree(staging, ignore_errors=True)
    return None


def _reason(err: BaseException) -> str:
    return err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0][:120]


def _read_meta(directory: Path, alphas: Sequence[float]) -> dict:
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DamagedEntry(f"meta.json unreadable: {_reason(err)}") from None
    if not isinstance(meta, dict) or meta.get("version") != FORMAT_VERSION:
        raise DamagedEntry("meta.json is not a set of this format")
    files, curves = meta.get("files"), meta.get("curves")
    if not isinstance(files, dict) or not isinstance(curves, dict):
        raise DamagedEntry("meta.json lacks the file digests or the curves")
    for a in alphas:
        curve = curves.get(f"{a:g}")
        if not isinstance(files.get(_weights_name(a)), str):
            raise DamagedEntry(f"meta.json records no {_weights_name(a)}")
        if not isinstance(curve, list) or not all(isinstance(v, (int, float)) for v in curve):
            raise DamagedEntry(f"meta.json has no learning curve for α={a:g}")
    return meta


def _read_state(path: Path, digest: str, template: Mapping[str, torch.Tensor], device: torch.device) -> StateDict:
    """One weights file, checked against its recorded digest and the model's own state dict."""
    try:
        if _file_digest(path) != digest:
            raise DamagedEntry(f"{path.name} does not match its recorded digest")
        state = torch.load(path, map_location=device, weights_only=True)
    except OSError as err:
        raise DamagedEntry(f"{path.name} unreadable: {_reason(err)}") from None
    except DamagedEntry:
        raise
    except Exception as err:  # noqa: BLE001 - torch.load of damaged data raises many kinds
        raise DamagedEntry(f"{path.name} cannot be loaded: {_reason(err)}") from None
    if not isinstance(state, dict) or set(state) != set(template) or any(
            not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape or state[k].dtype != v.dtype
            for k, v in template.items()):
        raise DamagedEntry(f"{path.name} does not fit the model")
    return state


def load(directory: Path, alphas: Sequence[float], device: torch.device,
         template: Mapping[str, torch.Tensor]) -> tuple[Entry | None, str | None]:
    """The stored set of ``alphas`` (None when there is none) and a notice when a damaged set was
    found and deleted. ``template`` is the model's state dict, which every stored one must fit."""
    remove_stale_staging(directory.parent)
    if not directory.exists():
        return None, None
    try:
        if not directory.is_dir():
            raise DamagedEntry("not a folder")
        meta = _read_meta(directory, alphas)
        states = {a: _read_state(directory / _weights_name(a), meta["files"][_weights_name(a)], template, device)
                  for a in alphas}
    except DamagedEntry as damage:
        _delete(directory)
        return None, f"The stored support networks in {directory} were damaged ({damage}); they were deleted " \
                     "and are trained again."
    return Entry(states, {a: [float(v) for v in meta["curves"][f"{a:g}"]] for a in alphas}), None


def _delete(entry: Path) -> None:
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    except OSError:  # a read-only store: the retrained set will not be stored either, with its own notice
        pass
