"""Pages 3 and 4 beyond their first render: RIG trained, explained and occluded with tiny settings on
two architectures (and alone when the second one's weights are missing), IG's widgets drawn from its
Param specs, an inversion run to its end, and the inversion session's Stop / Resume."""
import shutil
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from ui.inversion_session import InversionSession
from ui.rig_session import NO_SECOND_MODEL, STATE_KEY, second_model_default
from xai_core import dataset, embedded, rig
from xai_core.embedded_vgg import EmbeddedVGG
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


@pytest.fixture
def assets(tmp_path, monkeypatch):
    """The embedded checkpoints read from a folder holding only the shipped ``embedded.pt``; the
    model cache is emptied before and after, since it knows models by name, not by file."""
    folder = tmp_path / "assets"
    folder.mkdir()
    shutil.copy(embedded.CHECKPOINT, folder / "embedded.pt")
    monkeypatch.setattr(embedded, "CHECKPOINT", folder / "embedded.pt")
    st.cache_resource.clear()
    yield folder
    st.cache_resource.clear()


def test_rig_page_trains_explains_and_occludes_two_architectures_with_tiny_settings(tmp_path, monkeypatch, assets):
    monkeypatch.setenv("XAI_LAB_CACHE", str(tmp_path))
    at = _run(AppTest.from_file(str(PAGES / "3_IG_and_RIG.py"), default_timeout=240))
    keys = {w.key for w in at.main if getattr(w, "key", None)}
    assert {f"ig_rig.ig.{name}" for name in METHODS["ig"].params} <= keys  # IG's widgets come from its specs
    assert _labelled(at.text_input, "α values").value == rig.format_alphas(rig.DEFAULT_ALPHAS)
    # The default second architecture has no checkpoint here: said so, and the page goes on with one.
    second = _labelled(at.selectbox, "Second architecture")
    assert second.value == "embedded_resnet" and NO_SECOND_MODEL in second.options
    assert any("embedded_resnet" in w.value and "Showing embedded alone" in w.value for w in at.warning)
    torch.manual_seed(0)
    embedded.save_embedded(EmbeddedVGG(len(dataset.CLASSES), width=4, hidden=16), assets / "embedded_vgg.pt")
    second.set_value("embedded_vgg")
    _labelled(at.text_input, "α values").set_value("0, 2")
    _labelled(at.number_input, "Epochs").set_value(1)
    _labelled(at.select_slider, "Training images").set_value(64)
    _labelled(at.slider, "IG steps for RIG").set_value(4)
    _run(at)
    assert not at.warning
    _labelled(at.button, "Train or load").click()
    _run(at)
    assert sum("Trained and stored — 1 support networks" in s.value for s in at.success) == 2
    assert [h.value for h in at.subheader][:2] == ["embedded", "embedded_vgg"]
    assert len(list((tmp_path / "rig").iterdir())) == 2, "one store per architecture, under XAI_LAB_CACHE"
    accuracy = [t.value for t in at.dataframe[:2]]  # Table 1, one per architecture
    for table in accuracy:
        assert list(table.columns) == ["classifier", "α=2"]
        assert list(table.index) == [(split, name) for split in ("train", "val")
                                     for name in [*(dataset.CLASSES[c] for c in dataset.PART_PAIR), "total"]]
    _labelled(at.slider, "Images").set_value(1)
    _run(at)
    _labelled(at.button, "Explain these images with IG and RIG").click()
    _run(at)
    occlusion = at.dataframe[-1].value  # Table 3, the two architectures side by side
    assert list(occlusion.index) == ["1.1 (RIG region)", "1.2 (same area, IG)"]
    assert list(dict.fromkeys(occlusion.columns.get_level_values(0))) == ["embedded", "embedded_vgg"]
    assert occlusion.shape == (2, 2 * 4)
    memo = at.session_state[STATE_KEY]
    assert len(memo["supports"]) == 2 and len(memo["explanations"]) == 2
    for explanations in memo["explanations"].values():
        assert explanations[0].network_names == ["classifier", "α=2"]


def test_the_second_architecture_offered_first_is_the_papers_other_one(embedded, resnet_random):
    names = ["embedded", "embedded_vgg", "embedded_resnet", "resnet18", "vgg16"]
    assert second_model_default(embedded, names, available=[]) == "embedded_resnet"  # its message is shown
    assert second_model_default(embedded, names, available=["embedded_vgg"]) == "embedded_vgg"
    assert second_model_default(resnet_random, names, available=[]) == "vgg16"
    assert second_model_default(resnet_random, ["alexnet"], available=["alexnet"]) == NO_SECOND_MODEL


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
