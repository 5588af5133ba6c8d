"""Take ``assets/screenshot.png`` of the home page in a real browser (for the README).

    python scripts/screenshot.py [--out assets/screenshot.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from playwright.sync_api import sync_playwright  # noqa: E402

from scripts.browser import ROOT, launch_chromium, running_app  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "assets" / "screenshot.png"))
    args = parser.parse_args()
    with running_app() as url, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector(".js-plotly-plot .bars", timeout=90_000)  # the prediction chart has drawn
        page.wait_for_timeout(1500)  # let the remaining charts finish their layout
        page.screenshot(path=args.out, full_page=False)
        browser.close()
    print(args.out)


if __name__ == "__main__":
    main()
