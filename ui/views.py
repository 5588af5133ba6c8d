"""Every view a page shows goes through here: the chart or table, then one "Export" row.

Figures: the plotly modebar's camera (the user's browser renders the PNG, no kaleido needed), PNG and
SVG (the library's own PNG when the page gives one, else kaleido with the provenance caption), NPZ of
the arrays behind the view with their provenance inside, and "Add to report". Tables: CSV and "Add to
report". Downloads are computed when clicked (callable ``data``), not on every rerun.
"""
from __future__ import annotations

import io
import json
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from . import report
from .export import grid_png
from .figures import heatmap_grid_pages
from .provenance import caption_lines
from .static_export import figure_image, unavailable_reason

PngSource = bytes | Callable[[], bytes] | None
GRID_MAX_COLS = 4  # 4 maps of 220 px and the colour bar fit the main column of a 1440 px wide window


def file_stem(name: str) -> str:
    """``name`` as a file name: letters, digits, '-' and '_'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_").lower() or "view"


def npz_bytes(arrays: Mapping[str, np.ndarray], prov: Mapping[str, str]) -> bytes:
    """The arrays and, as the ``provenance`` entry, the provenance as a JSON string (``np.load(...)
    ["provenance"].item()`` reads it back; no pickle needed)."""
    if "provenance" in arrays:
        raise ValueError("'provenance' is reserved for the provenance entry")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()},
                        provenance=np.array(json.dumps(dict(prov), ensure_ascii=False)))
    return buffer.getvalue()


def _png(png: PngSource) -> bytes | None:
    return png() if callable(png) else png


def _add_to_report(make_item: Callable[[], report.ReportItem]) -> None:
    try:
        count = report.add_to_session(make_item())
    except report.ReportFull as err:
        st.toast(str(err), icon=":material/warning:")
    else:
        st.toast(f"Added to the report ({count} item{'s' * (count != 1)}).", icon=":material/check:")


def _add_button(make_item: Callable[[], report.ReportItem], key: str) -> None:
    # A callback, not ``if st.button(...)``: it runs on the next rerun even where the view is not drawn
    # again (a table shown only after its "Compute" button was pressed).
    st.button("Add to report", key=f"{key}.report", icon=":material/note_add:", on_click=_add_to_report,
              args=(make_item,))


def show_figure(fig: go.Figure, name: str, prov: Mapping[str, str], *, container: Any = st,
                arrays: Mapping[str, np.ndarray] | None = None, png: PngSource = None, key: str | None = None,
                **plot_kwargs: Any) -> None:
    """Draw ``fig`` in ``container`` and its export row. ``name`` titles the report item and names the
    files; ``key`` tells apart views of the same name on one page."""
    stem = file_stem(name)
    view_key = f"view.{stem}" + (f".{key}" if key else "")
    config = {**plot_kwargs.pop("config", {}), "displayModeBar": "hover", "displaylogo": False,
              "toImageButtonOptions": {"format": "png", "filename": stem, "scale": 2}}
    box = container.container()  # one block: works in columns and in st.empty placeholders alike
    box.plotly_chart(fig, config=config, key=f"{view_key}.chart", **plot_kwargs)  # keyed: equal figures may repeat
    caption = caption_lines(prov)
    with box.popover("Export", icon=":material/download:"):
        if png is not None:
            st.download_button("PNG", lambda: _png(png), f"{stem}.png", "image/png", key=f"{view_key}.png",
                               on_click="ignore")
        missing = unavailable_reason()
        if missing is not None:
            st.warning(missing)
        else:
            if png is None:
                st.download_button("PNG", lambda: figure_image(fig, "png", caption), f"{stem}.png", "image/png",
                                   key=f"{view_key}.png", on_click="ignore")
            st.download_button("SVG", lambda: figure_image(fig, "svg", caption), f"{stem}.svg", "image/svg+xml",
                               key=f"{view_key}.svg", on_click="ignore")
        if arrays is not None:
            st.download_button("NPZ (arrays and provenance)", lambda: npz_bytes(arrays, prov), f"{stem}.npz",
                               "application/octet-stream", key=f"{view_key}.npz", on_click="ignore")
        _add_button(lambda: report.figure_item(fig, name, prov, _png(png)), view_key)


def map_stack(maps: Sequence[Sequence[np.ndarray | None]]) -> np.ndarray | None:
    """``maps[row][col]`` as one rows × cols × H × W float32 array, NaN where a map is missing
    (a method failed); None when every map is."""
    shape = next((np.shape(m) for row in maps for m in row if m is not None), None)
    if shape is None:
        return None
    stack = np.full((len(maps), len(maps[0]) if maps else 0, *shape), np.nan, dtype=np.float32)
    for r, row in enumerate(maps):
        for c, heatmap in enumerate(row):
            if heatmap is not None:
                stack[r, c] = heatmap
    return stack


def show_grid(images: np.ndarray | Sequence[np.ndarray], maps: Sequence[Sequence[np.ndarray | None]],
              row_labels: Sequence[str], col_labels: Sequence[str], name: str, prov: Mapping[str, str], *,
              colormap: str = "viridis", opacity: float = 0.5, shared_scale: bool | str = True,
              outlines: dict | None = None, cell_px: int = 220, max_cols: int = GRID_MAX_COLS,
              arrays: Mapping[str, np.ndarray] | None = None, key: str | None = None, **view_kwargs: Any) -> None:
    """A ``figures.heatmap_grid`` through ``show_figure``: its PNG is ``export.grid_png`` with the
    provenance caption, its NPZ the maps (rows × cols × H × W, NaN where missing) plus ``arrays``.

    A grid wider than ``max_cols`` is drawn as several figures of ``max_cols`` columns, one under the
    other (the page scrolls), each at its own size: maps keep ``cell_px`` whatever the column's width.
    The PNG and the NPZ always hold the whole grid.
    """
    grid = dict(colormap=colormap, opacity=opacity, shared_scale=shared_scale, outlines=outlines)
    stack = map_stack(maps)
    whole = {**({} if stack is None else {"maps": stack}), "rows": np.array(row_labels),
             "columns": np.array(col_labels), **(arrays or {})}
    figures = heatmap_grid_pages(images, maps, row_labels, col_labels, **grid, cell_px=cell_px, max_cols=max_cols)
    view_kwargs["width"] = "content"  # the figure's own width: "stretch" would shrink the cells again
    box = view_kwargs.pop("container", st).container()  # one block, also inside an st.empty placeholder
    for i, fig in enumerate(figures):  # every part exports the whole grid, under the same file names
        show_figure(fig, name, prov, arrays=whole,
                    png=lambda: grid_png(images, maps, row_labels, col_labels, **grid, caption=caption_lines(prov)),
                    key="-".join(filter(None, [key, str(i) if i else None])) or None, container=box, **view_kwargs)


def show_table(frame: pd.DataFrame | Any, name: str, prov: Mapping[str, str], *, container: Any = st,
               key: str | None = None, table: bool = False, **kw: Any) -> None:
    """Draw ``frame`` (a DataFrame or its Styler; ``table=True``: a static ``st.table``) and its CSV
    download and "Add to report"."""
    data = frame.data if hasattr(frame, "data") and not isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    stem = file_stem(name)
    view_key = f"view.{stem}" + (f".{key}" if key else "")
    box = container.container()
    if table:
        box.table(frame, **kw)
    else:
        box.dataframe(frame, **kw)
    with box.popover("Export", icon=":material/download:"):
        labelled = not isinstance(data.index, pd.RangeIndex)  # a row index that names the rows goes in the file
        st.download_button("CSV", lambda: data.to_csv(index=labelled, na_rep="nan"), f"{stem}.csv", "text/csv",
                           key=f"{view_key}.csv", on_click="ignore")
        _add_button(lambda: report.table_item(data, name, prov), view_key)
