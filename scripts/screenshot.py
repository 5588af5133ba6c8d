"""Screenshots of the app in a real browser, 1440 px wide, for the README and for checking by eye.

    python scripts/screenshot.py            # every page's default view: assets/screenshots/<page>.png,
                                            # and the home page as assets/screenshot.png
    python scripts/screenshot.py --grid     # Gradients and CAM with 16 methods x 8 targets, opened from
                                            # its link: assets/screenshots/grid_16x8.png

Each page is captured down to the end of its content (at most ``--max-height`` px); a capture over
600 kB is stored with a 256-colour palette, then cut shorter until it fits.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from PIL import Image  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402

from scripts.browser import ROOT, launch_chromium, running_app  # noqa: E402

WIDTH = 1440
MAX_BYTES = 600_000
OUT = ROOT / "assets" / "screenshots"
APP = '[data-testid="stApp"]'
NAV_LINKS = '[data-testid="stSidebarNav"] a'
SCROLLED = ('[data-testid="stMain"]', '[data-testid="stSidebarContent"]')
GRID_PAGE = "Gradients_and_CAM"
GRID_FAMILIES = ("gradient", "cam")


def wait_for_run(page: Page, timeout_ms: int = 300_000) -> None:
    """Wait for the script run a navigation started, then for the charts to finish their layout."""
    try:
        page.wait_for_selector(f'{APP}[data-test-script-state="running"]', timeout=3_000)
    except PlaywrightTimeout:
        pass
    page.wait_for_selector(f'{APP}[data-test-script-state="notRunning"]', timeout=timeout_ms)
    page.wait_for_timeout(1500)


def page_stem(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def save_png(data: bytes, path: Path, limit: int = MAX_BYTES) -> int:
    """Store a screenshot under ``limit`` bytes: as taken, else with a 256-colour palette, else cut
    shorter from the bottom. Returns the file's size."""
    if len(data) > limit:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        while True:
            buffer = io.BytesIO()
            # An adaptive palette, dithered: a colour bar keeps its gradient instead of bands.
            image.convert("P", palette=Image.Palette.ADAPTIVE, colors=256, dither=Image.Dither.FLOYDSTEINBERG).save(
                buffer, "PNG", optimize=True)
            data = buffer.getvalue()
            if len(data) <= limit or image.height < 400:
                break
            image = image.crop((0, 0, image.width, int(image.height * 0.85)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def capture(page: Page, path: Path, max_height: int) -> None:
    """The page down to the end of its main column or its sidebar (streamlit scrolls those, not the
    document, so the viewport is made as tall as the content)."""
    height = max(page.evaluate(f"document.querySelector('{selector}')?.scrollHeight ?? 0") for selector in SCROLLED)
    page.set_viewport_size({"width": WIDTH, "height": max(900, min(int(height), max_height))})
    page.wait_for_timeout(1500)  # charts re-lay out to the new viewport
    size = save_png(page.screenshot(), path)
    page.set_viewport_size({"width": WIDTH, "height": 1000})
    print(f"{path.relative_to(ROOT)}  {size / 1000:.0f} kB")


def every_page(page: Page, url: str, max_height: int) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(".js-plotly-plot .bars", timeout=300_000)  # the home page's prediction chart
    wait_for_run(page)
    save_png(page.screenshot(), ROOT / "assets" / "screenshot.png")  # the README's first picture, as before
    links = page.locator(NAV_LINKS)
    titles = [t.strip().splitlines()[-1] for t in links.all_inner_texts()]
    for i, title in enumerate(titles):
        links.nth(i).click()
        wait_for_run(page)
        capture(page, OUT / f"{page_stem(title)}.png", max_height)


def grid_link(url: str, n_methods: int, n_targets: int) -> str:
    """The Gradients and CAM page's link with ``n_methods`` gradient and CAM methods (registry order) as
    columns and ``n_targets`` classes as rows: what a colleague's copied link would hold."""
    from xai_core.dataset import CLASSES
    from xai_core.methods import METHODS

    methods = [name for name, spec in METHODS.items() if spec.family in GRID_FAMILIES][:n_methods]
    query = {f"gradients_cam.methods.{family}": json.dumps([m for m in methods if METHODS[m].family == family])
             for family in (*GRID_FAMILIES, "path", "attention")}
    query["gradients_cam.targets"] = json.dumps(CLASSES[:n_targets])
    return f"{url}/{GRID_PAGE}?{urlencode(query)}"


def grid(page: Page, url: str, n_methods: int, n_targets: int, max_height: int) -> bool:
    """The stress grid's capture; False when the page did not take the link (its notice is printed)."""
    page.goto(grid_link(url, n_methods, n_targets), wait_until="domcontentloaded")
    page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stSelectbox"]', timeout=300_000)
    wait_for_run(page)
    notices = page.locator('[data-testid="stAlert"]').all_inner_texts()
    for notice in notices:
        print("notice:", notice.replace("\n", " "))
    capture(page, OUT / f"grid_{n_methods}x{n_targets}.png", max_height)
    return not any("could not be applied" in notice or "not offered" in notice for notice in notices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", action="store_true", help="only the Gradients and CAM stress grid")
    parser.add_argument("--methods", type=int, default=16, help="grid columns (gradient and CAM methods)")
    parser.add_argument("--targets", type=int, default=8, help="grid rows (classes)")
    parser.add_argument("--max-height", type=int, default=4000, help="the tallest capture, in px")
    args = parser.parse_args()
    with running_app() as url, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
        page.set_default_timeout(300_000)
        taken = grid(page, url, args.methods, args.targets, args.max_height) if args.grid else True
        if not args.grid:
            every_page(page, url, args.max_height)
        browser.close()
    if not taken:
        sys.exit("the page did not take the grid's link: the capture shows its defaults")


if __name__ == "__main__":
    main()
