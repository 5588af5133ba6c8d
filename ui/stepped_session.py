"""Long work that a page advances a chunk per rerun, with Stop and Resume (``inversion_controls``).

A widget change interrupts the script, so the work is cut into chunks (optimisation steps,
training epochs) and its state kept in ``st.session_state``: a rerun goes on where the last one
stopped. A subclass says whether work is left (``unfinished``) and how to do the next chunk
(``advance``); this holds the Stop/Resume flag every such session shares.
"""
from __future__ import annotations

from typing import Any, MutableMapping

from xai_core.engine import Progress


class SteppedSession:
    """The Stop/Resume state of work kept in ``state[key]`` (initially ``initial``, not active)."""

    def __init__(self, state: MutableMapping[str, Any], key: str, initial: dict[str, Any]):
        self._state: dict = state.setdefault(key, {**initial, "active": False})

    @property
    def unfinished(self) -> bool:
        """Whether some work is left."""
        raise NotImplementedError

    @property
    def active(self) -> bool:
        """Whether the work should go on (started or resumed, not stopped)."""
        return self._state["active"]

    @property
    def running(self) -> bool:
        """Whether this rerun should work: active, with work left."""
        return self.active and self.unfinished

    def stop(self) -> None:
        """The click that interrupted the work: keep what it reached."""
        self._state["active"] = False

    def resume(self) -> None:
        """Go on from what was reached."""
        self._state["active"] = True

    def advance(self, progress: Progress) -> None:
        """Do the next chunks while running, reporting ``progress``; raising from it stops them."""
        raise NotImplementedError
