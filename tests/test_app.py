"""The app and every page run under streamlit's AppTest on the embedded default model; through the
router (app.py): page switches, links (``st.query_params``), the class kept by name, the notices."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from xai_core import dataset, shortcut_dataset
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


def _linked(query: dict, page: str | None = None) -> AppTest:
    """A fresh browser opening a link: ``query`` as its query string, on ``page`` (None: Home)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(query)
    if page is not None:
        at.switch_page(page)
    return _run(at)


def _infos(at: AppTest) -> str:
    return " ".join(i.value for i in at.info)


def test_home_page_opens_on_grad_cam_beside_the_ground_truth_and_says_what_each_group_answers():
    at = _app()
    assert at.title[0].value == "XAI Lab"
    assert at.sidebar.selectbox(key="w.model").value == "embedded"
    assert len(at.get("plotly_chart")) == 4  # input, Grad-CAM, ground truth (dataset default), prediction bar
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]
    assert any(t.startswith("Grad-CAM") for t in titles)
    assert any(c.value.startswith("Pointing game: **hit**") for c in at.caption)  # the default sample is a hit
    groups = " ".join(m.value for m in at.markdown)
    assert all(f"**{group}**" in groups for group in ("Explain", "Compare", "Evaluate", "Train", "Report"))
    assert at.table, "model card missing"
    assert not _errors(at) and not at.info  # a dataset sample: no notice about photos


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
    at = _app()
    at.sidebar.radio(key="w.target_mode").set_value("Choose a class")
    _run(at)
    at.sidebar.selectbox(key="w.target").set_value(dataset.CLASSES[3])  # a class is chosen by name
    _run(at)
    target_line = next(m.value for m in at.markdown if "Target class" in m.value)
    assert target_line.endswith(f"{dataset.CLASSES[3]} (3)")
    at.sidebar.radio(key="w.target_mode").set_value("Predicted class")
    _run(at)
    assert not [w for w in at.sidebar.selectbox if w.key == "w.target"]
    at.sidebar.radio(key="w.target_mode").set_value("Choose a class")
    _run(at)
    assert at.sidebar.selectbox(key="w.target").value == dataset.CLASSES[3]


def test_unavailable_torchvision_weights_give_one_sentence_and_the_picker_goes_back_to_the_model_shown():
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
    picker = at.sidebar.selectbox(key="w.model")
    assert picker.value == "embedded" and "embedded" in picker.options
    assert f"{missing[0]} (weights unavailable)" in picker.options  # the others still say so
    _run(at)  # the error stays under the picker until another model is chosen
    assert len(_errors(at)) == 1 and at.sidebar.selectbox(key="w.model").value == "embedded"


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
    assert len(at.get("plotly_chart")) == 3, "a photo has no ground-truth figure"  # input, Grad-CAM, prediction


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
    titles = [a["text"] for chart in at.get("plotly_chart")  # wide comparisons come in parts of a few columns
              for a in json.loads(chart.proto.spec)["layout"].get("annotations", [])]
    assert [f"fill: {f}" for f in rise["fill"].choices] + [f"shape: {s}" for s in rise["shape"].choices] == \
        [t for t in titles if t.startswith(("fill: ", "shape: "))]


# ------------------------------------------------------------------- through the router
GRADIENTS, RISE = "pages/1_Gradients_and_CAM.py", "pages/2_RISE.py"


def test_a_page_keeps_its_settings_and_its_computed_masks_across_a_page_switch():
    at = _linked({"rise_page.rise.masks": "200"}, RISE)  # few masks: a fast test
    fewer = 100
    at.slider(key="rise_page.rise.masks").set_value(fewer)
    at.selectbox(key="rise_page.second").set_value(dataset.CLASSES[5])
    _run(at)
    computed = at.session_state["progressive.rise"]
    at.switch_page(GRADIENTS)
    _run(at)
    at.slider(key="gradients_cam.opacity").set_value(0.8)
    _run(at)
    at.switch_page(RISE)
    _run(at)
    assert at.slider(key="rise_page.rise.masks").value == fewer
    assert at.selectbox(key="rise_page.second").value == dataset.CLASSES[5]
    assert at.session_state["progressive.rise"] is computed, "the masks were computed again"
    at.switch_page(GRADIENTS)
    _run(at)
    assert at.slider(key="gradients_cam.opacity").value == 0.8


def test_a_link_opens_the_same_view_in_a_fresh_session():
    chosen = dataset.CLASSES[2]
    view = {"w.model": '"embedded_resnet"', "w.source": '"Dataset sample"', "w.seed": "3", "w.index": "5",
            "w.target_mode": '"Choose a class"', "w.target": json.dumps(chosen),
            "gradients_cam.methods.gradient": '["saliency"]', "gradients_cam.methods.cam": '["gradcam"]',
            "gradients_cam.methods.path": "[]", "gradients_cam.targets": json.dumps([chosen, dataset.CLASSES[4]]),
            "gradients_cam.opacity": "0.7", "gradients_cam.scaling": '"shared per method"'}
    at = _linked(view, GRADIENTS)
    assert not at.info
    assert at.sidebar.selectbox(key="w.model").value == "embedded_resnet"
    assert (at.sidebar.number_input(key="w.seed").value, at.sidebar.number_input(key="w.index").value) == (3, 5)
    assert at.sidebar.selectbox(key="w.target").value == chosen
    assert at.multiselect(key="gradients_cam.methods.cam").value == ["gradcam"]
    assert at.multiselect(key="gradients_cam.targets").value == [chosen, dataset.CLASSES[4]]
    assert at.slider(key="gradients_cam.opacity").value == 0.7
    written = at.query_params
    assert {key: json.loads(written[key]) for key in view} == {key: json.loads(v) for key, v in view.items()}
    again = _linked(written, GRADIENTS)  # a reload: the same view again
    assert again.multiselect(key="gradients_cam.targets").value == [chosen, dataset.CLASSES[4]]


def test_a_page_that_ends_early_still_writes_its_settings_into_the_link():
    """The IG and RIG page stops before its support networks are trained, the Report page while it is
    empty: the link must hold their settings all the same (``st.stop()`` would have prevented it)."""
    at = _linked({}, "pages/3_IG_and_RIG.py")
    at.text_input(key="ig_rig.alphas").set_value("0, 3")
    _run(at)
    assert json.loads(at.query_params["ig_rig.alphas"]) == "0, 3"
    assert json.loads(at.query_params["w.model"]) == "embedded"
    again = _linked(at.query_params, "pages/3_IG_and_RIG.py")  # the link reopens it
    assert again.text_input(key="ig_rig.alphas").value == "0, 3"


def test_a_links_invalid_values_are_named_in_notices_and_give_the_defaults():
    at = _linked({"w.model": '"no_such_model"', "w.index": "1000000000", "w.target_mode": '"Choose a class"',
                  "w.target": '"<b>unicorn</b>"', "gradients_cam.colormap": '"nope"',
                  "gradients_cam.gradcam.layer": '"no.such.layer"', "secret.key": "1"}, GRADIENTS)
    notices = _infos(at)
    for named in (r"w.model", r"w.index", "unicorn", r"gradients\_cam.colormap", "secret.key"):
        assert named in notices, named
    assert "<b>" not in notices  # a link's text is shown as text
    assert at.sidebar.selectbox(key="w.model").value == "embedded"
    assert at.sidebar.number_input(key="w.index").value == 0
    predicted = at.sidebar.selectbox(key="w.target").value
    assert at.selectbox(key="gradients_cam.colormap").value == "viridis"
    assert at.get("plotly_chart") and not _errors(at)
    crashing = _linked({"gradients_cam.opacity": "5.0", "gradients_cam.scaling": '"shared per method"'}, GRADIENTS)
    assert "could not be applied" in _infos(crashing) and r"gradients\_cam.opacity" in _infos(crashing)
    assert crashing.slider(key="gradients_cam.opacity").value == 0.5 and crashing.get("plotly_chart")
    assert predicted in dataset.CLASSES


def _use_checkpoint(at: AppTest, class_names: list[str]) -> None:
    at.sidebar.text_area(key="w.class_names_text").set_value(", ".join(class_names))
    at.sidebar.file_uploader(key="w.checkpoint_upload").set_value(
        ("shapes.pt", shortcut_dataset.CHECKPOINT.read_bytes(), "application/octet-stream"))
    _run(at)


def test_the_target_class_is_kept_by_name_across_a_model_change_and_reset_with_a_notice_when_absent():
    at = _app()
    at.switch_page(GRADIENTS)
    _run(at)
    at.sidebar.radio(key="w.target_mode").set_value("Choose a class")
    _run(at)
    chosen = dataset.CLASSES[3]
    at.sidebar.selectbox(key="w.target").set_value(chosen)
    at.multiselect(key="gradients_cam.targets").set_value([chosen, dataset.CLASSES[6]])
    _run(at)
    _use_checkpoint(at, list(reversed(dataset.CLASSES)))  # the same classes at other indices
    assert at.sidebar.selectbox(key="w.target").value == chosen
    assert at.multiselect(key="gradients_cam.targets").value == [chosen, dataset.CLASSES[6]]
    rows = [a["text"] for c in at.get("plotly_chart") for a in json.loads(c.proto.spec)["layout"]["annotations"]]
    assert chosen in " ".join(rows)
    renamed = [f"shape {i}" for i in range(len(dataset.CLASSES))]
    _use_checkpoint(at, renamed)
    notices = _infos(at)
    assert chosen in notices and "prediction" in notices
    assert at.sidebar.selectbox(key="w.target").value in renamed
    assert at.multiselect(key="gradients_cam.targets").value == []  # both names gone, said in a notice
    assert not _errors(at)


def test_a_photo_on_the_shapes_model_gets_a_plain_notice_and_a_dataset_sample_does_not():
    at = _app()
    at.switch_page(GRADIENTS)
    _run(at)
    assert not at.info
    at.sidebar.radio(key="w.source").set_value("Sample photo")
    _run(at)
    notice = _infos(at)
    assert "classes" in notice and all(name.replace("_", r"\_") in notice for name in dataset.CLASSES)
    files = " ".join(m.value for m in at.markdown)
    assert "resnet18" in files and "download.pytorch.org/models/" in files and ".pth" in files


VALUE_WIDGETS = {"selectbox", "multiselect", "slider", "select_slider", "radio", "number_input", "text_input",
                 "text_area", "checkbox", "toggle", "pills", "segmented_control", "color_picker", "date_input"}


@pytest.mark.parametrize("page", [p for p in PAGES if not p.endswith("8_Report.py")])
def test_every_setting_on_a_page_is_keyed_and_kept_for_the_session(page):
    """So that it survives a page switch, and a link can hold it (``ui.url_state`` takes only those)."""
    import ast

    tree = ast.parse((ROOT / page).read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr in VALUE_WIDGETS]
    assert calls
    for call in calls:
        keywords = {k.arg for k in call.keywords}
        assert {"key", "persist_state"} <= keywords, f"{page}:{call.lineno} {call.func.attr} is not kept"
