"""Plotly figures as PNG, SVG or PDF bytes through kaleido, which drives a Chrome/Chromium.

kaleido 1.x ships no browser: choreographer finds one (``BROWSER_PATH``, then ``chromium``/``chrome``
on the PATH and the usual install places). Playwright's own chromium is tried as well. Without any,
``StaticExportUnavailable`` says what to install; the chart's camera button (plotly.js in the user's
browser) exports PNG regardless.
"""
from __future__ import annotations

import glob
import os
import threading
import warnings
from functools import lru_cache
from typing import Callable, Sequence

import plotly.graph_objects as go

from .figures import with_caption

FORMATS = ("png", "svg", "pdf")
EXPORT_FONT = dict(family="DejaVu Sans, Arial, sans-serif", size=14)
_PLAYWRIGHT_CHROMIUM = "~/.cache/ms-playwright/chromium-*/chrome-linux*/chrome"
_DEFAULT_SIZE = (900, 500)
_RENDER_LOCK = threading.Lock()
RENDER_TIMEOUT_S = 90.0  # a browser that died under kaleido's kept-open server would otherwise hang the download


class StaticExportUnavailable(RuntimeError):
    """No browser for kaleido: the message says what to install."""


@lru_cache(maxsize=1)
def browser_path() -> str | None:
    """The Chrome/Chromium kaleido will drive, or None."""
    from choreographer.browsers.chromium import Chromium

    found = os.environ.get("BROWSER_PATH") or Chromium.find_browser(skip_local=False)
    if found is None:
        found = next(iter(sorted(glob.glob(os.path.expanduser(_PLAYWRIGHT_CHROMIUM)))), None)
        if found is not None:
            os.environ["BROWSER_PATH"] = found  # choreographer reads it when kaleido starts the browser
    return found


def _unavailable(reason: str) -> StaticExportUnavailable:
    return StaticExportUnavailable(
        f"Static export needs Chrome or Chromium ({reason}): install one (Debian/Ubuntu: apt install chromium; "
        "or run `kaleido_get_chrome`), or set BROWSER_PATH to it. The chart's camera button still downloads a PNG.")


def unavailable_reason() -> str | None:
    """Why static export cannot work here (what to install), or None when a browser was found."""
    return None if browser_path() is not None else str(_unavailable("none was found"))


def _readable(fig: go.Figure) -> go.Figure:
    """At least 14 px text in a font with the glyphs the labels need (∂, ×, …)."""
    fig.update_layout(font=dict(family=EXPORT_FONT["family"], size=max(EXPORT_FONT["size"], fig.layout.font.size or 0)))
    # Subplot titles are annotations with their own size.
    fig.for_each_annotation(lambda note: note.update(font_size=max(EXPORT_FONT["size"], note.font.size or 0)))
    return fig


def figure_image(fig: go.Figure, fmt: str = "png", caption: Sequence[str] | None = None, scale: float = 2) -> bytes:
    """``fig`` (with the ``caption`` lines under it) as ``fmt`` bytes; ``StaticExportUnavailable``
    when no browser can render it."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    if browser_path() is None:
        raise _unavailable("none was found")
    from choreographer.errors import BrowserFailedError, ChromeNotFoundError

    figure = _readable(with_caption(fig, caption or []))
    width = figure.layout.width or _DEFAULT_SIZE[0]
    height = figure.layout.height or _DEFAULT_SIZE[1]
    with _RENDER_LOCK:  # kaleido's server answers one caller at a time (one shared return queue)
        try:
            image = _bounded(lambda: figure.to_image(format=fmt, width=width, height=height, scale=scale))
        except (BrowserFailedError, ChromeNotFoundError) as err:
            raise _unavailable(f"the browser did not start: {err}") from err
        _keep_browser_open()
    return image


def _bounded(render: Callable[[], bytes]) -> bytes:
    """``render()`` in a daemon thread, given up after ``RENDER_TIMEOUT_S`` (the kept-open browser is then
    stopped, so the next export starts a fresh one)."""
    outcome: dict = {}

    def run() -> None:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "The kopts argument is ignored", UserWarning)
                outcome["image"] = render()
        except BaseException as err:  # handed to the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=run, name="xai-static-export", daemon=True)
    worker.start()
    worker.join(RENDER_TIMEOUT_S)
    if worker.is_alive():
        _restart_browser()
        raise _unavailable(f"the browser did not answer within {RENDER_TIMEOUT_S:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["image"]


def _restart_browser() -> None:
    import kaleido

    if _keep_browser_open.cache_info().currsize:
        _keep_browser_open.cache_clear()
        try:
            kaleido.stop_sync_server(silence_warnings=True)
        except Exception:  # noqa: BLE001 - a server that hangs may also fail to stop; a fresh one starts next time
            pass


@lru_cache(maxsize=1)
def _keep_browser_open() -> None:
    """After a first export has shown the browser works: keep it running for the next ones (about 0.4 s
    each instead of 4 s to start a browser every time; a report's PDF renders every figure)."""
    import kaleido

    kaleido.start_sync_server(silence_warnings=True)
