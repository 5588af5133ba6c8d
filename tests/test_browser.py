"""The app in a real browser: ``streamlit run`` driven by Debian's chromium (issue 14, part 7).

Per page: the default render without exception; one setting changed, which reruns and changes what is
shown; one export downloaded, opened and checked; a switch to another page and back, the setting kept;
the page's link (its query parameters) opened in a fresh browser context, the setting there again. And
the report: two views added from two pages, exported as HTML, opened with the network blocked.

One streamlit server for the module; every test has its own browser contexts (streamlit sessions), so a
test never depends on another. Settings are small (the embedded 64 px model, few images and epochs).
"""
from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from scripts.browser import CHROMIUM, ROOT, launch_chromium, running_app

pytestmark = pytest.mark.timeout(180)  # per test; each wait has its own limit

APP = '[data-testid="stApp"]'
EXCEPTION = '[data-testid="stException"]'
CHART = '[data-testid="stPlotlyChart"]'
TABLE = '[data-testid="stDataFrame"]'
PREDICTION_BARS = f'{CHART} .js-plotly-plot .bars'
NAV_LINKS = '[data-testid="stSidebarNav"] a'
MODEL_PICKER = '[data-testid="stSidebar"] [data-testid="stSelectbox"]'
VIEWPORT = {"width": 1440, "height": 1000}
WAIT_MS = 120_000


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def app():
    """The server's URL and a chromium, for the whole module."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run should have installed Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (CI installs Debian's chromium)")
    with running_app() as url, sync_playwright() as p:
        browser = launch_chromium(p)
        yield url, browser
        browser.close()


@pytest.fixture
def open_page(app):
    """``open_page(path_or_url)``: a page in a fresh browser context (a new streamlit session), its run
    finished and drawn without exception."""
    url, browser = app
    contexts = []

    def open_(where: str = "") -> Page:
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(where if where.startswith("http") else f"{url}/{where}", wait_until="domcontentloaded")
        page.wait_for_selector(MODEL_PICKER)  # the session's first run has drawn the sidebar
        wait_for_run(page)
        assert_no_exception(page)
        return page

    yield open_
    for context in contexts:
        context.close()


# ------------------------------------------------------------------------------- helpers
def wait_for_run(page: Page) -> None:
    """Wait for the script run an action started (it may be over before we look)."""
    try:
        page.wait_for_selector(f'{APP}[data-test-script-state="running"]', timeout=1_000)
    except PlaywrightTimeout:
        pass
    page.wait_for_selector(f'{APP}[data-test-script-state="notRunning"]', timeout=WAIT_MS)


def assert_no_exception(page: Page) -> None:
    assert page.locator(EXCEPTION).count() == 0, page.locator(EXCEPTION).first.inner_text()


def view(page: Page, name: str) -> Locator:
    """The chart ``ui.views.show_figure`` drew for ``name`` (its file stem, e.g. ``top_predictions``)."""
    return page.locator(f".st-key-view-{name}-chart")


def slider(page: Page, label: str) -> Locator:
    return page.locator(f'input[type="range"][aria-label="{label}"]')


def nudge(page: Page, label: str, key: str) -> str:
    """Move the slider ``label`` one step with the keyboard; its new value."""
    handle = slider(page, label)
    handle.focus()
    handle.press(key)
    wait_for_run(page)
    return handle.input_value()


def number(page: Page, label: str) -> Locator:
    return page.get_by_role("spinbutton", name=label, exact=True)


def type_number(page: Page, label: str, value: int) -> None:
    box = number(page, label)
    box.fill(str(value))
    box.press("Enter")
    wait_for_run(page)


def choose(page: Page, label: str, option: str) -> None:
    """Pick ``option`` in the select box labelled ``label``."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_run(page)


def go_to(page: Page, title: str) -> None:
    """Follow the sidebar's link to the page ``title``."""
    page.locator(NAV_LINKS).filter(has=page.get_by_text(title, exact=True)).click()
    wait_for_run(page)
    assert_no_exception(page)


def export_menu(page: Page, shown: Locator) -> Locator:
    """Open the "Export" menu under the view ``shown`` (a chart or a table: the block holding both)."""
    shown.first.wait_for()
    block = shown.first.locator("xpath=ancestor::div[@data-testid='stVerticalBlock'][1]")
    block.get_by_role("button", name="Export").click()
    return page.locator('[data-testid="stPopoverBody"]')


def export(page: Page, shown: Locator, button: str) -> Path:
    """Click the download ``button`` in the export menu of the view ``shown``; the downloaded file."""
    menu = export_menu(page, shown)
    with page.expect_download(timeout=WAIT_MS) as download:
        menu.get_by_role("button", name=button, exact=True).click()
    page.keyboard.press("Escape")
    return Path(download.value.path())


def add_to_report(page: Page, shown: Locator, count: int) -> None:
    export_menu(page, shown).get_by_role("button", name="Add to report").click()
    expect(page.get_by_text(f"Added to the report ({count} item")).to_be_visible()
    page.keyboard.press("Escape")


def link_value(url: str, key: str) -> str | None:
    """The query parameter ``key`` of ``url``, decoded (the JSON of a widget's value)."""
    return dict(parse_qsl(urlsplit(url).query)).get(key)


def overlays(chart: Locator) -> list[str | None]:
    """The images a plotly chart draws (their data URIs): they change when a map or its colours do."""
    chart.locator(".js-plotly-plot image").first.wait_for()
    images = chart.locator(".js-plotly-plot image")
    return [images.nth(i).get_attribute("href") for i in range(images.count())]


def redrawn(chart: Locator, before: list[str | None], timeout_s: float = 60) -> bool:
    """Whether the chart's images change from ``before`` within ``timeout_s`` (the rerun may still run)."""
    deadline = time.monotonic() + timeout_s
    while overlays(chart) == before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays of an NPZ export and its provenance (a JSON string inside, no pickle)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return arrays, json.loads(arrays.pop("provenance").item())


def png(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()  # decodes the whole file: a truncated PNG fails here
    return image


def kept(page: Page, open_page, title: str, holds, link: tuple[str, str] | None, other: str = "Report") -> Page:
    """``holds(page)`` (it asserts, with ``expect``) after a switch to ``other`` and back, and in a fresh
    context opened on the page's link, once that link holds ``link`` (a widget key and the JSON of its
    value: one query parameter per setting); the fresh page is returned."""
    go_to(page, other)
    go_to(page, title)
    holds(page)
    if link is not None:
        key, value = link
        try:
            page.wait_for_url(lambda url: link_value(url, key) == value, timeout=10_000)
        except PlaywrightTimeout:
            pytest.fail(f"{title}: the link {unquote_plus(page.url)} does not hold {key}={value}")
    fresh = open_page(page.url)
    holds(fresh)
    return fresh


def grid_has_colour(chart: Locator) -> bool:
    """The chart's screenshot holds a colour map's colours, not a blank or grey chart."""
    shot = np.asarray(Image.open(io.BytesIO(chart.screenshot())).convert("RGB"), dtype=np.int16)
    return ((shot.max(axis=2) - shot.min(axis=2)) > 20).mean() > 0.3


# --------------------------------------------------------------------------------- pages
def test_navigation_names_home_and_groups_the_pages(open_page):
    page = open_page()
    # Streamlit first draws a navigation from the pages/ folder (app.py listed as "app"); the router's
    # own, with its Home page, replaces it once app.py has run st.navigation.
    page.wait_for_function("document.querySelector('[data-testid=\"stSidebarNav\"] a')?.innerText.includes('Home')")
    links = page.locator(NAV_LINKS)
    assert links.count() == len(list((ROOT / "pages").glob("*.py"))) + 1  # home + one per page file
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    for group in ("Explain", "Compare", "Evaluate", "Train", "Report"):
        assert group in nav


def test_home(open_page):
    page = open_page()
    page.wait_for_selector(PREDICTION_BARS)
    expect(page.get_by_role("heading", name="XAI Lab").first).to_be_visible()
    type_number(page, "Sample index", 7)
    expect(page.get_by_text("Dataset sample seed 0, #7")).to_be_visible()

    arrays, prov = npz(export(page, view(page, "input_image"), "NPZ (arrays and provenance)"))
    assert arrays["image"].shape == (64, 64, 3) and arrays["image"].dtype == np.uint8
    assert prov["image"].startswith("Dataset sample seed 0, #7") and prov["model"] == "embedded"
    chart = png(export(page, view(page, "top_predictions"), "PNG"))  # kaleido, with the provenance caption
    assert 600 <= chart.width <= 4000 and 300 <= chart.height <= 4000

    kept(page, open_page, "Home", lambda p: expect(number(p, "Sample index")).to_have_value("7"),
         ("w.index", "7"))


def test_gradients_and_cam(open_page):
    page = open_page("Gradients_and_CAM")
    expect(page.get_by_role("heading", name="Gradients and CAM")).to_be_visible()
    grid = view(page, "gradients_and_cam")
    before = overlays(grid)
    choose(page, "Colormap", "inferno")
    assert redrawn(grid, before), "the colormap changed but the maps were not redrawn"

    image = png(export(page, grid, "PNG"))  # the library's grid: 4 methods (columns) × 1 target
    assert image.width >= 4 * 160 and image.width > image.height

    kept(page, open_page, "Gradients and CAM",
         lambda p: expect(p.get_by_role("combobox", name="Colormap")).to_have_value("inferno"),
         ("gradients_cam.colormap", '"inferno"'))


def test_rise(open_page):
    page = open_page("RISE")
    maps = view(page, "rise_maps")
    expect(maps.get_by_text("N = 1000")).to_be_visible()
    assert nudge(page, "Masks", "Home") == "50"  # a prefix of the masks already accumulated: no new work
    expect(maps.get_by_text("N = 50", exact=True)).to_be_visible()

    arrays, prov = npz(export(page, view(page, "rise_masks"), "NPZ (arrays and provenance)"))
    assert arrays["masks"].ndim == 3 and arrays["masks"].shape[0] == 6
    assert prov["param: masks"] == "50"

    kept(page, open_page, "RISE", lambda p: expect(slider(p, "Masks")).to_have_value("50"),
         ("rise_page.rise.masks", "50"))


def test_ig_and_rig(open_page):
    page = open_page("IG_and_RIG")
    expect(page.get_by_role("heading", name="Integrated Gradients", exact=True)).to_be_visible()
    chart = page.locator(CHART).first
    before = overlays(chart)
    page.locator('[data-testid="stRadio"]').filter(has_text="Reduce").get_by_text("abs_sum", exact=True).click()
    wait_for_run(page)
    assert redrawn(chart, before), "the reduction changed but the IG map was not redrawn"

    arrays, prov = npz(export(page, chart, "NPZ (arrays and provenance)"))
    assert arrays["map"].shape == (64, 64) and arrays["attribution"].shape == (3, 64, 64)
    assert prov["param: reduce"] == "abs_sum" and prov["param: steps"] == "32"

    kept(page, open_page, "IG and RIG", lambda p: expect(p.get_by_role("radio", name="abs_sum")).to_be_checked(),
         ("ig_rig.ig.reduce", '"abs_sum"'))


def test_inversion_and_zeiler_fergus(open_page):
    page = open_page("Inversion_and_Zeiler_Fergus")
    expect(page.get_by_role("heading", name="Inversion and Zeiler & Fergus")).to_be_visible()
    page.get_by_role("tab", name="Occlusion sensitivity").click()
    positions = page.get_by_text(re.compile(r"\d+ occluder positions"))
    before = positions.inner_text()
    assert nudge(page, "Stride (px)", "ArrowRight") == "5"
    expect(positions).not_to_have_text(before)

    arrays, prov = npz(export(page, view(page, "occlusion_target_probability"), "NPZ (arrays and provenance)"))
    assert arrays["probability"].shape == (len(arrays["ys"]), len(arrays["xs"]))
    assert prov["param: stride"] == "5"

    def holds(p: Page) -> None:
        p.get_by_role("tab", name="Occlusion sensitivity").click()
        expect(slider(p, "Stride (px)")).to_have_value("5")

    kept(page, open_page, "Inversion and Zeiler-Fergus", holds, ("inversion.occ.stride", "5"))


def test_evaluate(open_page):
    page = open_page("Evaluate")
    expect(page.get_by_text("Press Run to evaluate 2 method(s) with 3 metric(s) on 32 images.")).to_be_visible()
    type_number(page, "Number of images", 4)
    expect(page.get_by_text("on 4 images.")).to_be_visible()
    page.get_by_role("button", name="Run", exact=True).click()
    wait_for_run(page)
    expect(page.get_by_role("heading", name="Methods × metrics")).to_be_visible()
    assert_no_exception(page)

    table = pd.read_csv(export(page, page.locator(TABLE), "CSV"))
    assert list(table.columns) == ["Method", "Metric", "Better", "Mean", "95% CI low", "95% CI high", "n"]
    assert len(table) == 2 * 3 and table["n"].between(1, 4).all()

    kept(page, open_page, "Evaluate", lambda p: expect(number(p, "Number of images")).to_have_value("4"),
         ("evaluate.n", "4"))


def test_compare(open_page):
    page = open_page("Compare")
    expect(page.get_by_role("heading", name="Compare models")).to_be_visible()
    grid = view(page, "compare_models")
    grid.locator(".js-plotly-plot image").first.wait_for()
    page.wait_for_selector(PREDICTION_BARS)
    assert grid_has_colour(grid), "the grid's overlays are missing from the screenshot"
    assert nudge(page, "Top-k % for the overlap", "ArrowRight") == "11"
    expect(page.get_by_text("top 11 % pixels")).to_be_visible()

    table = pd.read_csv(export(page, page.locator(TABLE), "CSV"))
    assert list(table.columns) == ["method", "models", "Spearman ρ", "top-11 % IoU", "note"]
    assert len(table) == 2  # two methods, one pair of models

    kept(page, open_page, "Compare", lambda p: expect(slider(p, "Top-k % for the overlap")).to_have_value("11"),
         ("compare.percent", "11"))


def test_fine_tune(open_page):
    page = open_page("Fine_tune")
    expect(page.get_by_text("Choose the loss and the schedule")).to_be_visible()
    for label, value in (("Epochs", 1), ("Training images", 16), ("Validation images", 8)):
        type_number(page, label, value)
    page.get_by_role("button", name="Start fine-tuning").click()
    expect(page.get_by_role("heading", name="Start vs final")).to_be_visible(timeout=WAIT_MS)
    wait_for_run(page)
    expect(page.get_by_text("1 of 1 epochs")).to_be_visible()
    assert_no_exception(page)

    table = pd.read_csv(export(page, page.locator(TABLE), "CSV"), index_col=0)
    assert list(table.columns) == ["start", "final", "change"]
    assert "pointing game (Grad-CAM)" in table.index
    assert np.allclose(table["final"] - table["start"], table["change"], equal_nan=True)

    kept(page, open_page, "Fine-tune", lambda p: expect(number(p, "Epochs")).to_have_value("1"), ("ft.epochs", "1"))


def test_report_exported_as_html_opens_offline(open_page, app, tmp_path):
    page = open_page()
    add_to_report(page, view(page, "top_predictions"), 1)
    go_to(page, "Gradients and CAM")
    add_to_report(page, view(page, "gradients_and_cam"), 2)
    go_to(page, "Report")
    expect(page.get_by_text("1. Top predictions")).to_be_visible()
    expect(page.get_by_text("2. Gradients and CAM")).to_be_visible()
    title = page.get_by_label("Report title")
    title.fill("Meeting <3 Dec>")
    title.press("Enter")
    wait_for_run(page)
    with page.expect_download(timeout=WAIT_MS) as download:
        page.get_by_role("button", name="Download HTML (one file, opens offline)").click()
    assert download.value.suggested_filename == "meeting_3_dec.html"
    saved = tmp_path / download.value.suggested_filename  # the browser reads a file as HTML by its name
    download.value.save_as(saved)
    html = saved.read_text(encoding="utf-8")
    assert "Meeting &lt;3 Dec&gt;" in html and "Meeting <3 Dec>" not in html  # the title is text, escaped

    _, browser = app
    offline = browser.new_context(viewport=VIEWPORT)
    refused = []

    def block_network(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    try:
        offline.route("**/*", block_network)
        report = offline.new_page()
        report.goto(saved.as_uri())
        # Both figures, drawn by the inlined plotly.js (a file of several MB: parsing takes seconds).
        expect(report.locator(".js-plotly-plot")).to_have_count(2, timeout=30_000)
        report.wait_for_load_state("networkidle")
        assert refused == [], f"the report asked the network for {refused}"
    finally:
        offline.close()

    fresh = kept(page, open_page, "Report", lambda p: expect(p.get_by_role("heading", name="Report")).to_be_visible(),
                 None, other="Home")  # a report's items are the session's: no link can carry them
    expect(page.get_by_label("Report title")).to_have_value("Meeting <3 Dec>")  # kept with the report
    expect(page.get_by_text("2. Gradients and CAM")).to_be_visible()
    expect(fresh.get_by_text("The report is empty")).to_be_visible()  # a link holds the view, not the session's report


# ------------------------------------------------------------------ hostile text (issue 15)
HOSTILE = ["**bold** <b>x</b> ![img](http://example.com/x.png)", "[link](http://example.com/l)",
           "<a href='http://example.com/a'>a</a>", "<img src='http://example.com/i.png'>"] + \
          [f"plain_{i}" for i in range(4)]


def test_class_names_with_markup_are_shown_as_text_and_fetch_nothing(open_page, tmp_path):
    """A checkpoint's class names full of markdown and HTML: shown literally in the sidebar, on the home
    page and in its charts, on every page; no link or image is made of them, no outside request is sent."""
    import torch

    from xai_core.models import load_model

    checkpoint = tmp_path / "hostile.pt"
    torch.save(load_model("embedded").module.state_dict(), checkpoint)
    page = open_page()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:",
                                                                               "blob:")) else None)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Custom checkpoint").click()
    names = sidebar.get_by_role("textbox", name="Class names (optional)")
    names.fill("\n".join(HOSTILE))
    names.press("Control+Enter")
    wait_for_run(page)
    sidebar.locator('input[type="file"]').first.set_input_files(str(checkpoint))
    page.wait_for_function("document.body.innerText.includes('hostile.pt')")
    wait_for_run(page)
    page.wait_for_selector(PREDICTION_BARS)
    for where in ["", "RISE", "IG_and_RIG", "Compare"]:
        if where:
            page.locator(NAV_LINKS).filter(has_text=re.compile({"RISE": "^RISE$", "IG_and_RIG": "IG and RIG",
                                                                "Compare": "^Compare$"}[where])).click()
            wait_for_run(page)
        assert_no_exception(page)
        text = page.locator(APP).inner_text()
        assert "**bold** <b>x</b>" in text, f"the class name is not shown literally on {where or 'Home'}"
        for made in ("a[href*='example.com']", "img[src*='example.com']", "image[href*='example.com']"):
            found = page.locator(made)
            assert found.count() == 0, f"{made} made from a class name on {where or 'Home'}: " + " | ".join(
                found.nth(i).evaluate("e => (e.closest('[data-testid]')?.dataset.testid || '') + ': ' + "
                                      "e.parentElement.outerHTML.slice(0, 300)") for i in range(found.count()))
        assert page.locator(f"{APP} b", has_text=re.compile(r"^x$")).count() == 0
    page.wait_for_timeout(500)
    assert not outside, f"outside requests: {outside}"
