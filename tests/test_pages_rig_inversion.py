"""Pages 3 and 4 beyond their first render: RIG trained, explained and occluded with tiny settings,
IG's widgets drawn from its Param specs, an inversion run to its end, and the inversion session's
Stop / Resume."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui.inversion_session import InversionSession
from ui.rig_session import STATE_KEY
from xai_core import rig
from xai_core.engine import Engine
from xai_core.inversion import InversionSettings
from xai_core.methods import METHODS

PAGES = Path(__file__).resolve().parent.parent / "pages"


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _labelled(widgets, label: str):
    return next(w for w in widgets if w.label.startswith(label))


def test_rig_page_trains_explains_and_occludes_with_tiny_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("XAI_LAB_CACHE", str(tmp_path))
    at = _run(AppTest.from_file(str(PAGES / "3_IG_and_RIG.py"), default_timeout=240))
    keys = {w.key for w in at.main if getattr(w, "key", None)}
    assert {f"ig_rig.ig.{name}" for name in METHODS["ig"].params} <= keys  # IG's widgets come from its specs
    assert _labelled(at.text_input, "α values").value == rig.format_alphas(rig.DEFAULT_ALPHAS)
    _labelled(at.text_input, "α values").set_value("0, 2")
    _labelled(at.number_input, "Epochs").set_value(1)
    _labelled(at.select_slider, "Training images").set_value(64)
    _labelled(at.slider, "IG steps for RIG").set_value(4)
    _run(at)
    _labelled(at.button, "Train or load").click()
    _run(at)
    assert any("Trained and stored — 1 support networks" in s.value for s in at.success)
    assert list((tmp_path / "rig").iterdir()), "the networks are stored under XAI_LAB_CACHE"
    _labelled(at.slider, "Images").set_value(1)
    _run(at)
    _labelled(at.button, "Explain these images").click()
    _run(at)
    occlusion = at.dataframe[-1].value
    assert list(occlusion.index) == ["1.1 (RIG region)", "1.2 (same area, IG)"]
    memo = at.session_state[STATE_KEY]
    assert len(memo["supports"]) == 1 and len(memo["explanations"]) == 1
    (explanations,) = memo["explanations"].values()
    assert explanations[0].network_names == ["classifier", "α=2"]


def test_inversion_page_runs_to_the_end_and_keeps_the_library_defaults():
    steps = 10
    at = _run(AppTest.from_file(str(PAGES / "4_Inversion_and_Zeiler_Fergus.py"), default_timeout=240))
    defaults = InversionSettings()
    assert _labelled(at.slider, "Blur every").value == defaults.blur_every
    assert _labelled(at.slider, "Steps").value == defaults.steps
    _labelled(at.slider, "Steps").set_value(steps)
    _labelled(at.button, "Run inversion").click()
    _run(at)
    state = at.session_state["inv.state"]
    (name, run), = state["runs"]
    assert run.steps_done == steps and not state["active"]
    _run(at)  # Stop was drawn enabled for the run; once it is done, nothing is left to stop or resume
    assert _labelled(at.button, "Stop").disabled and _labelled(at.button, "Resume").disabled
    assert any(h.value.startswith(name) for h in at.subheader)


def test_inversion_session_stops_keeps_the_steps_reached_and_resumes(embedded, embedded_random):
    state: dict = {}
    session = InversionSession(state)
    settings = InversionSettings(steps=4, frame_every=0)
    session.start(embedded, [6], settings, others=[embedded_random], start_image=None, engine=Engine("cpu"))
    assert [name for name, _ in session.runs] == [embedded.name, embedded_random.name] and session.running
    assert [run.targets for _, run in session.runs] == [[6], [6]]  # the same class, by name, on the second model

    def interrupt(fraction, message):
        if sum(run.steps_done for _, run in session.runs) == 3:
            raise KeyboardInterrupt  # streamlit interrupting the script when Stop is clicked

    with pytest.raises(KeyboardInterrupt):
        session.advance(interrupt)
    assert session.active and session.unfinished  # a rerun for another widget goes on
    session.stop()
    assert not session.running and [run.steps_done for _, run in session.runs] == [2, 1]
    session.resume()
    session.advance(lambda fraction, message: None)
    assert not session.active and not session.unfinished
    assert InversionSession(state).runs == session.runs  # the next rerun finds them in the session state
