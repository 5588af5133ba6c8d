"""How fast the app answers: the cold start and, per page, the first view and a re-render.

    python bench/bench_pages.py [--repeat 3] [--pages RISE,IG]

Each repeat runs in a fresh process (empty streamlit caches, nothing imported yet) driving
``app.py`` through streamlit's ``AppTest``:

- cold start: from the process's first line to the first Home render (imports, the default
  model loaded, Home's Grad-CAM drawn);
- per page, in navigation order, after Home has loaded the model: *first* is the render right
  after switching to the page (its default view, computed from empty result caches), *rerun*
  a second render with nothing changed (what a settings change that needs no new computation
  costs: every cached result is reused, only the widgets and figures are drawn again).

The table shows the best of the repeats for each cell (the machine may be shared: the best run
is the least disturbed one).
"""
from __future__ import annotations

import threading
import time

START = time.perf_counter()  # before any import: the cold start counts them

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300  # seconds per script run


def _timed_run(at) -> float:
    start = time.perf_counter()
    at.run(timeout=TIMEOUT)
    elapsed = time.perf_counter() - start
    if at.exception:
        raise RuntimeError([e.message for e in at.exception])
    return elapsed


def measure(page_filter: list[str]) -> dict:
    """One fresh-process measurement: {"cold": s, "pages": {title: {"first": s, "rerun": s}}}."""
    sys.path.insert(0, str(ROOT))
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run(timeout=TIMEOUT)
    cold = time.perf_counter() - START
    if at.exception:
        raise RuntimeError([e.message for e in at.exception])
    # The imports the app starts in the background after its first page (ui/warm_imports.py) finish
    # while a user looks at Home; the pages are timed after them, as the user would meet them.
    for thread in threading.enumerate():
        if thread.name == "xai-warm-imports":
            thread.join()
    rows = {"Home": {"first": _timed_run(at), "rerun": _timed_run(at)}}  # Home again, model loaded
    for file, title in _pages():
        if page_filter and not any(f.lower() in title.lower() for f in page_filter):
            continue
        at.switch_page(f"pages/{file}")
        rows[title] = {"first": _timed_run(at), "rerun": _timed_run(at)}
    return {"cold": cold, "pages": rows}


def _pages() -> list[tuple[str, str]]:
    """(file, title) of every page in the navigation, in its order (read from app.py's table)."""
    import ast

    tree = ast.parse((ROOT / "app.py").read_text())
    table = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "PAGES" for t in node.targets))
    groups = ast.literal_eval(table)
    return [(file, title) for pages in groups.values() for file, title, _ in pages
            if (ROOT / "pages" / file).is_file()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes; the best of them is shown")
    parser.add_argument("--pages", default="", help="comma-separated parts of page titles (default: all)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    page_filter = [p for p in args.pages.split(",") if p]
    if args.child:
        print(json.dumps(measure(page_filter)))
        return
    runs = []
    for _ in range(max(1, args.repeat)):
        command = [sys.executable, str(Path(__file__).resolve()), "--child", "--pages", args.pages]
        output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        runs.append(json.loads(output.strip().splitlines()[-1]))
    print(f"cold start (imports + model load + first Home render): {min(r['cold'] for r in runs):.2f} s "
          f"(best of {len(runs)})")
    print(f"{'page':32s} {'first view (s)':>15s} {'rerun (s)':>10s}")
    for title in runs[0]["pages"]:
        first = min(r["pages"][title]["first"] for r in runs)
        rerun = min(r["pages"][title]["rerun"] for r in runs)
        print(f"{title:32s} {first:15.2f} {rerun:10.2f}")


if __name__ == "__main__":
    main()
