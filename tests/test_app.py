"""The app and every page run under streamlit's AppTest on the embedded default model."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from xai_core import dataset
from xai_core.models import list_models

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))
TIMEOUT = 120  # seconds per script run: the first run imports torch and loads the model


def _run(at: AppTest) -> AppTest:
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.message for e in at.exception]
    return at


def _app(path: str = "app.py") -> AppTest:
    return _run(AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT))


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]  # the main area's and the sidebar's


def test_home_page_shows_prediction_chart_and_model_card():
    at = _app()
    assert at.title[0].value == "XAI Lab"
    assert at.sidebar.selectbox(key="w.model").value == "embedded"
    assert len(at.get("plotly_chart")) == 3  # input image, ground truth (dataset default), prediction bar
    assert at.table, "model card missing"
    assert not _errors(at)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_on_the_default_selection(page):
    at = _app(page)
    assert at.sidebar.selectbox(key="w.model").value == "embedded"


def test_changing_the_dataset_sample_changes_the_image_and_the_ground_truth():
    at = _app()
    before = at.sidebar.number_input(key="w.index").value
    at.sidebar.number_input(key="w.index").set_value(before + 1)
    _run(at)
    assert at.sidebar.number_input(key="w.index").value == before + 1
    expected = dataset.make_sample(0, before + 1).class_name
    assert any(f"true class: {expected}" in c.value for c in at.caption)


def test_a_chosen_target_class_is_used_and_kept_while_its_selector_is_hidden():
    # Page switches go through the router (app.py), which AppTest bypasses when a pages/ folder exists
    # (it runs the page file alone): tests/test_browser.py checks that choices survive them.
    at = _app()
    at.sidebar.radio(key="w.target_mode").set_value("Choose a class")
    _run(at)
    at.sidebar.selectbox(key="w.target").set_value(3)
    _run(at)
    target_line = next(m.value for m in at.markdown if "Target class" in m.value)
    assert target_line.endswith(f"{dataset.CLASSES[3]} (3)")
    at.sidebar.radio(key="w.target_mode").set_value("Predicted class")
    _run(at)
    assert not [w for w in at.sidebar.selectbox if w.key == "w.target"]
    at.sidebar.radio(key="w.target_mode").set_value("Choose a class")
    _run(at)
    assert at.sidebar.selectbox(key="w.target").value == 3


def test_unavailable_torchvision_weights_give_one_sentence_and_keep_the_previous_model():
    missing = [row["name"] for row in list_models() if not row["weights_available"] and row["name"] != "embedded"]
    if not missing:
        pytest.skip("every torchvision model has its weights cached on this machine")
    at = _app()
    at.sidebar.selectbox(key="w.model").set_value(missing[0])
    _run(at)
    errors = _errors(at)
    assert len(errors) == 1 and missing[0] in errors[0] and "\n" not in errors[0].strip()
    assert at.get("plotly_chart"), "the page should still render with the previous model"
    assert any("embedded" in str(cell) for cell in at.table[0].value.to_numpy().ravel())


def _png_bytes(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((*size[::-1], 3), 200, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_uploaded_image_is_used_and_a_bad_upload_shows_an_error_and_keeps_it():
    at = _app()
    at.sidebar.radio(key="w.source").set_value("Upload")
    _run(at)
    at.sidebar.file_uploader(key="w.image_upload").set_value(("grey.png", _png_bytes(), "image/png"))
    _run(at)
    assert any("Upload: grey.png" in c.value for c in at.caption)
    assert not _errors(at)
    at.sidebar.file_uploader(key="w.image_upload").set_value(("broken.png", b"not an image", "image/png"))
    _run(at)
    errors = _errors(at)
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert any("Upload: grey.png" in c.value for c in at.caption), "the last good image must stay selected"


def test_a_sample_photo_can_be_selected():
    at = _app()
    at.sidebar.radio(key="w.source").set_value("Sample photo")
    _run(at)
    photo = at.sidebar.selectbox(key="w.photo").value
    assert any(f"Sample photo: {photo}" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 2, "a photo has no ground-truth figure"


def _state_dict_bytes(num_classes: int) -> bytes:
    from xai_core.models import build_random
    import torch

    buffer = io.BytesIO()
    torch.save(build_random("embedded", num_classes=num_classes, device="cpu").module.state_dict(), buffer)
    return buffer.getvalue()


def test_an_uploaded_checkpoint_with_class_names_replaces_the_model_and_a_bad_one_is_refused():
    at = _app()
    at.sidebar.text_area(key="w.class_names_text").set_value("left, right, up")
    at.sidebar.file_uploader(key="w.checkpoint_upload").set_value(("mine.pt", _state_dict_bytes(3),
                                                                   "application/octet-stream"))
    _run(at)
    card = dict(zip(*at.table[0].value.to_numpy().T))
    assert "mine.pt" in card["weights"] and card["classes"] == "3"
    assert {p.value for p in at.sidebar.selectbox} >= {"embedded"}
    at.sidebar.file_uploader(key="w.checkpoint_upload").set_value(("junk.pt", b"junk", "application/octet-stream"))
    _run(at)
    assert len(_errors(at)) == 1 and "junk.pt" in _errors(at)[0]
    card = dict(zip(*at.table[0].value.to_numpy().T))
    assert "mine.pt" in card["weights"], "the last model that loaded stays in use"
    at.sidebar.file_uploader(key="w.checkpoint_upload").set_value(None)
    _run(at)
    at.sidebar.button(key="w.checkpoint_remove").click()
    _run(at)
    card = dict(zip(*at.table[0].value.to_numpy().T))
    assert "mine.pt" not in card["weights"] and card["classes"] == str(len(dataset.CLASSES))
    assert not _errors(at)


def test_the_rise_page_draws_every_rise_parameter_and_reuses_its_masks_when_n_goes_down():
    from xai_core.methods import METHODS

    at = _app("pages/2_RISE.py")
    rise = METHODS["rise"].params
    widgets = {w.key: w for w in at.main if getattr(w, "key", None)}
    assert {f"rise_page.rise.{name}" for name in rise} <= set(widgets)
    assert list(widgets["rise_page.rise.fill"].options) == list(rise["fill"].choices)  # the library's vocabulary
    assert any(f"{rise['masks'].default} masks accumulated" in c.value for c in at.caption)
    widgets["rise_page.rise.masks"].set_value(rise["masks"].default // 2)
    _run(at)
    # The smaller N is a prefix of what was computed: nothing new accumulated, the map redrawn.
    assert any(f"{rise['masks'].default} masks accumulated" in c.value for c in at.caption)
    assert at.get("plotly_chart") and not _errors(at)


def test_the_rise_comparison_has_one_map_per_fill_and_per_shape_of_the_library():
    from xai_core.methods import METHODS

    at = _app("pages/2_RISE.py")
    rise = METHODS["rise"].params
    next(s for s in at.slider if s.label == "Masks per map").set_value(rise["masks"].low)
    at.toggle[0].set_value(True)
    _run(at)
    assert not _errors(at)
    titles = [a["text"] for chart in at.get("plotly_chart")[-2:]
              for a in json.loads(chart.proto.spec)["layout"]["annotations"]]
    assert [f"fill: {f}" for f in rise["fill"].choices] + [f"shape: {s}" for s in rise["shape"].choices] == \
        [t for t in titles if t.startswith(("fill: ", "shape: "))]
