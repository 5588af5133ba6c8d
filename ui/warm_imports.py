"""Imports that the first explanation would otherwise pay, done in the background after the first
page has been drawn.

The first ``torch.autograd.grad`` with ``grad_outputs`` (DeconvNet projections, several targets in one
backward) imports ``torch.fx.experimental.symbolic_shapes`` and with it sympy: 1.5 s on two cores.
The app's cold start no longer imports torchvision (which imported them as a side effect), so that
cost would land on whichever page first differentiates; a daemon thread takes it while the user
looks at the first page. Python's import lock makes a page that needs the module meanwhile wait
for the same import, never import it twice.
"""
from __future__ import annotations

import importlib
import threading

MODULES = ("torch.fx.experimental.symbolic_shapes",)
_started = threading.Event()


def _import_all() -> None:
    for name in MODULES:
        importlib.import_module(name)


def start_once() -> None:
    """Start the background imports, once per process (the app calls it after each run)."""
    if not _started.is_set():
        _started.set()
        threading.Thread(target=_import_all, name="xai-warm-imports", daemon=True).start()
