"""The What-if page under AppTest: a box edit (the selection's path: ``edit_state.add``), a top-k removal and
a pixel click give the library's numbers; undo and redo; a bad edit list refused; the edited image served
to another page."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from xai_core import dataset
from xai_core.edits import (Box, Edit, TopK, apply_edits, edits_to_json, occluder_positions_at, pixel_report,
                            prediction_change)
from xai_core.methods import METHODS, explain

PAGES = Path(__file__).resolve().parent.parent / "pages"
TIMEOUT = 120


def _run(runnable) -> AppTest:
    """Run the app (or, after an interaction, the element's app) and check it drew without error."""
    at = runnable.run(timeout=TIMEOUT)
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.fixture
def page() -> AppTest:
    return _run(AppTest.from_file(str(PAGES / "9_What_if.py"), default_timeout=TIMEOUT))


@pytest.fixture(scope="module")
def x(embedded) -> torch.Tensor:
    return embedded.preprocess(dataset.make_sample(0, 0).pil())  # the sidebar's default image


def _table(at: AppTest, index: int = 0):
    return at.dataframe[index].value


def _assert_change_table(at: AppTest, model, x, edits, maps=None):
    expected = prediction_change(model, x, apply_edits(model, x, edits, maps))
    table = _table(at)
    assert list(table["class"]) == [r["name"] for r in expected]
    assert np.allclose(table["Δ logit"], [r["logit_change"] for r in expected], atol=1e-4)
    assert np.allclose(table["p after"], [r["probability_after"] for r in expected], atol=1e-5)
    return expected


def test_a_box_gives_the_librarys_prediction_change(page, embedded, x):
    for name, value in (("x0", 4), ("y0", 6), ("x1", 40), ("y1", 50)):
        page.number_input(key=f"whatif.box_{name}").set_value(value)
    page.selectbox(key="whatif.replacement").set_value("grey")
    _run(page.button(key="whatif.add_box").click())
    edits = [Edit(Box(4, 6, 40, 50), replacement="grey")]
    assert page.text_input(key="whatif.edits").value == edits_to_json(edits)
    expected = _assert_change_table(page, embedded, x, edits)
    after = max(expected, key=lambda r: r["logit_after"])
    assert page.metric[0].value == after["name"]


def test_top_k_removal_and_a_pixel_click_match_the_library(page, embedded, x):
    heatmap = explain(embedded, x, "gradcam", [int(embedded.module(x[None]).argmax())])[0].map
    page.slider(key="whatif.k").set_value(20.0)
    _run(page.button(key="whatif.remove_k").click())
    edits = [Edit(TopK("gradcam", 20.0))]
    _assert_change_table(page, embedded, x, edits, {"gradcam": heatmap})
    edited = apply_edits(embedded, x, edits, {"gradcam": heatmap})
    edited_map = explain(embedded, edited, "gradcam", [int(embedded.module(x[None]).argmax())])[0].map
    page.number_input(key="whatif.pixel_y").set_value(10)
    _run(page.number_input(key="whatif.pixel_x").set_value(33))
    expected = pixel_report({"original": heatmap, "edited": edited_map}, 10, 33)
    pixel = _table(page, 1)
    assert np.allclose(pixel["value"], [r["value"] for r in expected.values()], atol=1e-5)
    assert np.allclose(pixel["percentile"], [r["percentile"] for r in expected.values()])


def test_a_pixel_is_read_in_every_map_of_the_page_methods_by_classes(page, embedded, x):
    top = [int(i) for i in embedded.module(x[None])[0].argsort(descending=True)[:2]]
    page.multiselect(key="whatif.pixel_methods").set_value(["saliency"])
    page.multiselect(key="whatif.pixel_targets").set_value([top[1]])
    page.number_input(key="whatif.pixel_y").set_value(12)
    _run(page.number_input(key="whatif.pixel_x").set_value(30))
    pixel = _table(page, 1)
    assert len(pixel) == 2 + 3  # gradcam original and edited, gradcam for the 2nd class, saliency for both
    for method in ("gradcam", "saliency"):
        for target in top:
            if (method, target) == ("gradcam", top[0]):
                continue
            heatmap = explain(embedded, x, method, [target])[0].map
            row = pixel[pixel["map"].str.startswith(f"{method} · original · {embedded.categories[target]}")]
            assert len(row) == 1 and np.isclose(row["value"].iloc[0], heatmap[12, 30], atol=1e-5)


def test_undo_redo_and_a_bad_list(page):
    page.button(key="whatif.add_box").click().run(timeout=TIMEOUT)
    page.number_input(key="whatif.box_x1").set_value(10)
    _run(page.button(key="whatif.add_box").click())
    two = page.text_input(key="whatif.edits").value
    assert two.count("box") == 2
    _run(page.button(key="whatif.undo").click())
    assert page.text_input(key="whatif.edits").value.count("box") == 1
    _run(page.button(key="whatif.redo").click())
    assert page.text_input(key="whatif.edits").value == two
    page.text_input(key="whatif.edits").set_value('[{"box":[1,2,3]}]').run(timeout=TIMEOUT)
    assert not page.exception and any("x0, y0, x1, y1" in e.value for e in page.error)
    assert page.text_input(key="whatif.edits").value == two  # the list stays as it was
    _run(page.text_input(key="whatif.edits").set_value('[{"box":[0,0,63,63]}]'))
    assert page.metric[0].value  # a typed list is applied
    _run(page.button(key="whatif.undo").click())
    assert page.text_input(key="whatif.edits").value == two


def test_the_edited_image_is_every_pages_input(page, embedded, x):
    _run(page.button(key="whatif.add_box").click())
    _run(page.button(key="whatif.use").click())
    served = page.session_state["xai.edited"]
    assert any("edited image (1 edits)" in i.value for i in page.sidebar.info)
    edited = apply_edits(embedded, x, [Edit(Box(0, 0, 32, 32))])
    assert torch.allclose(served["x"], edited)
    other = AppTest.from_file(str(PAGES / "1_Gradients_and_CAM.py"), default_timeout=TIMEOUT)
    other.session_state["xai.edited"] = served
    _run(other)
    assert any("edited image (1 edits)" in i.value for i in other.sidebar.info)
    predicted = embedded.categories[int(embedded.module(edited[None]).argmax())]
    assert any(predicted in c.value for c in other.sidebar.caption)
    _run(other.sidebar.button(key="w.edited_back").click())
    assert other.session_state["xai.edited"] is None
    original = embedded.categories[int(embedded.module(x[None]).argmax())]
    assert any(f"prediction: {original}" in c.value for c in other.sidebar.caption)


def test_a_pixel_of_an_occlusion_map_lists_the_occluders_covering_it(page, embedded, x):
    _run(page.selectbox(key="whatif.method").set_value("occlusion"))
    page.number_input(key="whatif.pixel_y").set_value(20)
    _run(page.number_input(key="whatif.pixel_x").set_value(40))
    target = int(embedded.module(x[None]).argmax())
    extras = explain(embedded, x, "occlusion", [target])[0].extras
    expected = occluder_positions_at(np.asarray(extras["probability_grid"]),
                                     float(extras["base_probability"]),
                                     extras["occluder_ys"], extras["occluder_xs"],
                                     METHODS["occlusion"].params["window"].default, 20, 40)
    shown = _table(page, 2)
    assert len(expected) == 3 and list(shown["top"]) == [r["top"] for r in expected]
    assert np.allclose(shown["drop"], [r["drop"] for r in expected], atol=1e-6)
