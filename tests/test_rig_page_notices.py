"""The IG and RIG page says what the on-disk store did (issue 15): "Trained, not stored" with the store's
notice when the set could not be written, and the notice of a damaged stored set that was deleted and
trained again; with tiny settings on the embedded model alone."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui import rig_session
from ui.shared_store import SharedStore

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "3_IG_and_RIG.py")
TIMEOUT = 240
pytestmark = pytest.mark.filterwarnings("ignore::xai_core.rig.training.StoreWarning")  # said on the page instead


@pytest.fixture(autouse=True)
def fresh_shared_stores(monkeypatch):
    """Networks trained by another test (or an earlier run here) are not in memory: the disk store answers."""
    def fresh() -> None:
        monkeypatch.setattr(rig_session, "SHARED", {kind: SharedStore(entries, size) for kind, (entries, size)
                                                    in rig_session.SHARED_BOUNDS.items()})
    fresh()
    return fresh


def _run(at: AppTest) -> AppTest:
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.message for e in at.exception]
    return at


def _trained() -> AppTest:
    at = _run(AppTest.from_file(PAGE, default_timeout=TIMEOUT))
    at.selectbox(key="ig_rig.second_model").set_value(rig_session.NO_SECOND_MODEL)
    at.text_input(key="ig_rig.alphas").set_value("0, 2")
    at.number_input(key="ig_rig.epochs").set_value(1)
    at.select_slider(key="ig_rig.n_train").set_value(64)
    _run(at)
    next(b for b in at.button if b.label.startswith("Train or load")).click()
    return _run(at)


def _status(at: AppTest) -> list[str]:
    return [e.value for kind in ("success", "info") for e in getattr(at, kind) if "support networks" in e.value
            and e.value.split(" — ")[0] in ("Trained and stored", "Loaded from disk", "Trained, not stored")]


def test_a_set_that_cannot_be_stored_is_trained_not_stored_with_the_stores_notice(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XAI_LAB_CACHE", str(blocker / "cache"))
    at = _trained()
    assert _status(at) == ["Trained, not stored — 1 support networks, held in memory only"]
    notices = [w.value for w in at.warning if "were not stored" in w.value]
    assert len(notices) == 1 and "trains them again" in notices[0]


def test_a_damaged_stored_set_is_trained_again_and_stored_with_a_notice(tmp_path, monkeypatch, fresh_shared_stores):
    monkeypatch.setenv("XAI_LAB_CACHE", str(tmp_path))
    at = _trained()
    assert [s.split(" — ")[0] for s in _status(at)] == ["Trained and stored"]
    assert not [w.value for w in at.warning if "stored support networks" in w.value]
    [weights] = (tmp_path / "rig").glob("*/alpha_2*.pt")
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    fresh_shared_stores()
    at = _trained()
    assert [s.split(" — ")[0] for s in _status(at)] == ["Trained and stored"]
    damaged = [w.value for w in at.warning if "were damaged" in w.value]
    assert len(damaged) == 1 and "trained again" in damaged[0]
