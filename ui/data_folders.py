"""The server folders a visitor may read images from: only those under the operator's allow-list.

The allow-list is ``$XAI_DATA_DIRS``, folders separated by ``os.pathsep`` (``:`` on Linux, ``;`` on
Windows); unset, it is the app's own ``data`` folder (``<repository>/data``), where
``python -m xai_core dataset-export --out data/NAME`` writes an export of the embedded dataset.
A page never takes a typed server path: it offers the dataset folders found in the allowed folders
(``dataset_folders``: each allowed folder that is a dataset itself, and its direct subfolders that
are) in a select box, named relative to their allowed folder. A name that is not offered (a link's,
or a folder removed meanwhile) is refused with ``REFUSED``, which names no folder of the server;
nothing else of the server's file system is listed or sent to the browser. A symbolic link that
leads out of its allowed folder is never offered.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Sequence

import streamlit as st

from xai_core.errors import ParameterError
from xai_core.folder_dataset import IMAGE_SUFFIXES, LABELS_FILE

from .url_state import settled

ENVIRONMENT = "XAI_DATA_DIRS"
APP_DATA = Path(__file__).resolve().parent.parent / "data"
REFUSED = ("That folder is not one this server offers: choose one of the listed dataset folders (the operator "
           f"adds folders with {ENVIRONMENT}).")
PROBED_ENTRIES = 64
"""Entries read per folder to tell whether it holds a dataset: a few suffice, a huge folder costs no more."""
LISTED_ENTRIES = 1024
"""Entries of an allowed folder looked at for datasets (a folder of images given by mistake stays quick)."""


def allowed_roots() -> list[Path]:
    """The allowed folders that exist, resolved (symbolic links followed), in the order given."""
    configured = os.environ.get(ENVIRONMENT)
    entries = [Path(p).expanduser() for p in configured.split(os.pathsep) if p.strip()] if configured is not None \
        else [APP_DATA]
    roots = []
    for entry in entries:
        resolved = entry.resolve()
        if resolved.is_dir() and resolved not in roots:
            roots.append(resolved)
    return roots


def _entries(folder: Path, limit: int = PROBED_ENTRIES) -> list[Path]:
    try:
        with os.scandir(folder) as found:
            return [Path(e.path) for e in itertools.islice(found, limit)]
    except OSError:
        return []


def is_dataset(folder: Path) -> bool:
    """An export (``labels.csv``) or an ImageFolder (a subfolder holding images), judged from the first
    ``PROBED_ENTRIES`` entries."""
    if (folder / LABELS_FILE).is_file():
        return True
    return any(sub.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in _entries(sub))
               for sub in _entries(folder))


def dataset_folders(roots: Sequence[Path] | None = None) -> dict[str, Path]:
    """``{name: folder}`` of the datasets a visitor may choose: each allowed folder that is one (named by
    its own name) and its subfolders that are (``root/sub``), sorted by name, none outside its root."""
    found: dict[str, Path] = {}
    for root in allowed_roots() if roots is None else roots:
        candidates = [root] + sorted(p for p in _entries(root, LISTED_ENTRIES) if p.is_dir())
        for folder in candidates:
            resolved = folder.resolve()
            if not resolved.is_relative_to(root) or not is_dataset(resolved):
                continue
            base = root.name if folder == root else f"{root.name}/{folder.name}"
            name, count = base, 1
            while name in found:  # two allowed folders of the same name
                count += 1
                name = f"{base} ({count})"
            found[name] = resolved
    return dict(sorted(found.items()))


def offered_folder(name: str, folders: dict[str, Path]) -> Path:
    """The folder offered under ``name``; ``ParameterError(REFUSED)`` for any other name or path."""
    if name not in folders:
        raise ParameterError(REFUSED)
    return folders[name]


def folder_picker(container: Any, label: str, key: str, help_text: str) -> Path | None:
    """A select box of ``dataset_folders`` (kept for the session, its name in the link); None, with a
    notice saying how an operator offers one, when there is none."""
    folders = dataset_folders()
    if not folders:
        container.info(f"No dataset folder is offered on this server. The operator puts them in the app's data "
                       f"folder or names the folders holding them in {ENVIRONMENT}.")
        return None
    kept = st.session_state.get(key)
    if kept is not None and kept not in folders:  # a link's, or a folder gone: never looked up on disk
        container.warning(REFUSED)
        settled(key)  # said here: the link's own notice would repeat it
        del st.session_state[key]
    name = container.selectbox(label, list(folders), key=key, persist_state="session", help=help_text)
    return offered_folder(name, folders)
