"""The inversion runs of page 4 across reruns: start, Stop (keep what is reached), Resume.

Streamlit reruns the page on every click, and a click during a long run interrupts the
script (the run keeps the steps it completed: ``InversionRun`` is stoppable at any step).
So the runs live in ``st.session_state`` with one flag: ``active`` while they should keep
optimising. Start sets it, Stop clears it, Resume sets it again, and ``advance`` optimises
while it is set, then clears it when every run is done.
"""
from __future__ import annotations

from typing import Any, MutableMapping, Sequence

from PIL import Image

from xai_core.engine import Engine, Progress
from xai_core.inversion import InversionRun, InversionSettings, run_together
from xai_core.model_handle import LoadedModel

from .stepped_session import SteppedSession

STATE_KEY = "inv.state"


class InversionSession(SteppedSession):
    """Page 4's runs (one per model: the sidebar's, and optionally a second architecture)."""

    def __init__(self, state: MutableMapping[str, Any]):
        super().__init__(state, STATE_KEY, {"runs": []})

    @property
    def runs(self) -> list[tuple[str, InversionRun]]:
        """(model name, run) pairs, in the order they were started."""
        return self._state["runs"]

    @property
    def unfinished(self) -> bool:
        """Whether some run has steps left."""
        return any(not run.finished for _, run in self.runs)

    def start(self, model: LoadedModel, targets: Sequence[int], settings: InversionSettings, *,
              others: Sequence[LoadedModel] = (), start_image: Image.Image | None, engine: Engine) -> None:
        """New runs: ``targets`` on ``model``, and the same classes (by name) on each of ``others``;
        from noise, or from ``start_image`` for a deep dream."""
        names = [model.categories[t] for t in targets]
        runs = [(m.name, InversionRun(m, list(classes), settings, engine=engine,
                                      start=None if start_image is None else m.preprocess(start_image)))
                for m, classes in [(model, targets), *((other, names) for other in others)]]
        self._state.update(runs=runs, active=True)

    def advance(self, progress: Progress) -> None:
        """Optimise every run until done (``progress`` may interrupt it: the steps done are kept, and the
        runs stay active, so a rerun caused by another widget goes on)."""
        run_together([run for _, run in self.runs], progress=progress)
        self._state["active"] = False
