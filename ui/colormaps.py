"""The library's colour maps (``xai_core.render``) in plotly's terms, so figures and PNG exports agree.

``DIVERGING`` is the library's, named here too for the pages that import it from here.
"""
from __future__ import annotations

from xai_core.render import DIVERGING, anchors

__all__ = ["DIVERGING", "plotly_colorscale"]


def plotly_colorscale(cmap: str) -> list[list]:
    """The colour map's anchors as a plotly ``colorscale``: ``[[position, "rgb(r,g,b)"], ...]``."""
    table = anchors(cmap)
    n = len(table) - 1
    return [[i / n, f"rgb({int(r)},{int(g)},{int(b)})"] for i, (r, g, b) in enumerate(table)]
