"""The What-if page in a real browser (chromium, as ``tests/test_browser.py``): a box drawn with the mouse
(plotly's modebar box select, then a drag over the image) becomes an edit, and the page's top-1 after the
edit and its logit change are the library's for that edit."""
from __future__ import annotations

import re

import pytest
import test_browser
import torch
from test_browser import view, wait_for_run

from xai_core import dataset
from xai_core.edits import apply_edits, edits_from_json, prediction_change
from xai_core.models import load_model

pytestmark = pytest.mark.timeout(180)
app, open_page = test_browser.app, test_browser.open_page  # the module's server and fresh-session fixtures
EDIT_LIST = 'input[aria-label="Edit list (JSON)"]'


def test_a_box_drawn_with_the_mouse_is_removed_and_the_numbers_are_the_librarys(open_page):
    page = open_page("What_if")
    chart = view(page, "what-if_image")
    chart.hover()
    chart.locator('[data-title="Box Select"]').click()
    area = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(area["x"] + area["width"] * 0.05, area["y"] + area["height"] * 0.05)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.6, area["y"] + area["height"] * 0.7, steps=12)
    page.mouse.up()
    page.wait_for_function(f"document.querySelector('{EDIT_LIST}').value.includes('box')", timeout=60_000)
    wait_for_run(page)
    edits = edits_from_json(page.locator(EDIT_LIST).input_value())
    assert len(edits) == 1 and edits[0].region_kind == "box"
    model = load_model("embedded", device="cpu")
    x = model.preprocess(dataset.make_sample(0, 0).pil())
    rows = prediction_change(model, x, apply_edits(model, x, edits))
    after = max(rows, key=lambda r: r["logit_after"])
    assert page.locator('[data-testid="stMetricValue"]').first.inner_text().strip() == after["name"]
    delta = page.locator('[data-testid="stMetricDelta"]').first.inner_text()
    logit = float(re.search(r"([+-][0-9.]+) logit", delta).group(1))
    assert logit == pytest.approx(after["logit_change"], abs=2e-3)
    assert torch.isfinite(torch.tensor(logit))
