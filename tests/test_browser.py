"""Real-browser smoke test: the app served by ``streamlit run`` and driven by chromium."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from scripts.browser import CHROMIUM, ROOT, launch_chromium, running_app

pytestmark = pytest.mark.timeout(480)  # bounds the whole run; each wait has its own limit

EXCEPTION = '[data-testid="stException"]'
PREDICTION_BARS = '[data-testid="stPlotlyChart"] .js-plotly-plot .bars'
NAV_LINKS = '[data-testid="stSidebarNav"] a'


@pytest.fixture(scope="module")
def page():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run should have installed Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (CI installs Debian's chromium)")
    with running_app() as url, sync_playwright() as p:
        browser = launch_chromium(p)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(90_000)
        tab.goto(url, wait_until="domcontentloaded")
        yield tab
        browser.close()


def test_home_page_draws_the_prediction_chart_without_exception(page):
    page.wait_for_selector(PREDICTION_BARS)
    assert page.locator(EXCEPTION).count() == 0
    assert page.get_by_role("heading", name="XAI Lab").first.is_visible()


def test_sidebar_navigation_to_every_page_and_back(page):
    pages = sorted((ROOT / "pages").glob("*.py"))
    if not pages:
        pytest.skip("no pages yet")
    # Streamlit first draws a navigation from the pages/ folder (app.py listed as "app"); the router's
    # own, with its Home page, replaces it once app.py has run st.navigation.
    page.wait_for_function("document.querySelector('[data-testid=\"stSidebarNav\"] a')?.innerText.includes('Home')")
    links = page.locator(NAV_LINKS)
    assert links.count() == len(pages) + 1  # home + one per page file
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    for i, href in [*enumerate(hrefs)][1:] + [(0, hrefs[0])]:
        links.nth(i).click()
        page.wait_for_url(href)
        _wait_for_run(page)
        assert page.locator(EXCEPTION).count() == 0, f"exception on {href}"
        assert page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').count() > 0  # shared sidebar
    page.wait_for_selector(PREDICTION_BARS)


def _wait_for_run(page, timeout_ms: int = 150_000) -> None:
    """Wait for the script run the navigation started (it may be over before we look)."""
    app = '[data-testid="stApp"]'
    try:
        page.wait_for_selector(f'{app}[data-test-script-state="running"]', timeout=5_000)
    except PlaywrightTimeout:
        pass
    page.wait_for_selector(f'{app}[data-test-script-state="notRunning"]', timeout=timeout_ms)


def test_sidebar_choices_survive_page_switches(page):
    """The router draws the sidebar on every page, so a choice made on one page is there on the next."""
    page.locator(NAV_LINKS).first.click()
    _wait_for_run(page)
    index = page.get_by_label("Sample index")
    index.fill("7")
    index.press("Enter")
    _wait_for_run(page)
    page.get_by_text("Choose a class").click()
    _wait_for_run(page)
    links = page.locator(NAV_LINKS)
    for i in [*range(1, links.count()), 0]:
        links.nth(i).click()
        _wait_for_run(page)
        assert page.get_by_label("Sample index").input_value() == "7"
        assert page.get_by_role("radio", name="Choose a class").is_checked()
        assert page.locator(EXCEPTION).count() == 0


def test_the_evaluate_page_runs_a_small_evaluation(page):
    """Run on the Evaluate page: the methods × metrics table and the figures appear in the browser."""
    page.locator(NAV_LINKS).filter(has_text="Evaluate").click()
    _wait_for_run(page)
    images = page.get_by_role("spinbutton", name="Number of images")
    images.fill("4")
    images.press("Enter")
    _wait_for_run(page)
    page.get_by_role("button", name="Run", exact=True).click()
    _wait_for_run(page)
    page.wait_for_selector('[data-testid="stDataFrame"]')
    assert page.get_by_role("heading", name="Methods × metrics").is_visible()
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1  # the per-image distributions
    assert page.locator(EXCEPTION).count() == 0


def test_the_compare_page_draws_the_grid_and_the_agreement_table(page):
    """The Compare page in the browser: the models × methods grid is drawn (its screenshot holds the colour
    map's colours, not a blank or grey chart), with the predictions beside it and no exception."""
    page.locator(NAV_LINKS).filter(has_text="Compare").click()
    _wait_for_run(page)
    assert page.get_by_role("heading", name="Compare models").is_visible()
    grid = page.locator('[data-testid="stPlotlyChart"]').first
    grid.locator(".js-plotly-plot image").first.wait_for()
    page.wait_for_selector(PREDICTION_BARS)
    shot = np.asarray(Image.open(io.BytesIO(grid.screenshot())).convert("RGB"), dtype=np.int16)
    saturation = shot.max(axis=2) - shot.min(axis=2)
    assert (saturation > 20).mean() > 0.3, "the grid's overlays are missing from the screenshot"
    assert page.locator(EXCEPTION).count() == 0
