"""Pure plotly figure builders: numpy in, ``go.Figure`` out; no streamlit here.

Images travel as PNG data URIs inside ``go.Image`` (a few kB instead of a JSON array of
every pixel); heatmaps are coloured by ``xai_core.render`` (plotly's colour bars by
``ui.colormaps``), so a figure and its PNG export (``ui.export``) look the same.
"""
from __future__ import annotations

import base64
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from xai_core import render

from .colormaps import plotly_colorscale
from .labels import fit_lines, plotly_text

_MARGIN = dict(l=10, r=10, t=40, b=10)
# Explicit colours: streamlit's theme would otherwise give neighbouring series near-identical blues.
_PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d"]
# Legends go under the plot, at the bottom of the figure (which grows to fit them): above the
# plot they collide with the title; the container reference keeps them clear of the x-axis title.
_LEGEND = dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left")
# Colour bars of single-image figures lie under the image, so the image gets the column's full width.
_COLOUR_BAR = dict(orientation="h", y=-0.02, yanchor="top", x=0.5, xanchor="center", lenmode="pixels", len=200,
                   thickness=12, title_side="top")


def png_data_uri(image: np.ndarray) -> str:
    """H×W×3 uint8 -> ``data:image/png;base64,...``."""
    return "data:image/png;base64," + base64.b64encode(render.png_bytes(np.asarray(image, np.uint8))).decode("ascii")


def _text(text: str | None) -> str | None:
    """A title or name as plotly shows it: the characters written, never its pseudo-HTML (class and file
    names are user text)."""
    return None if text is None else plotly_text(text)


def _hide_axes(fig: go.Figure) -> go.Figure:
    """Hide the axes and keep square pixels in every subplot: each y-axis is scaled to its own
    x-axis (anchoring all of them to "x" stretches every cell but the first when the figure is resized)."""
    fig.update_xaxes(visible=False, showgrid=False, constrain="domain")
    fig.update_yaxes(visible=False, showgrid=False, constrain="domain")
    fig.for_each_yaxis(lambda axis: axis.update(scaleanchor=axis.anchor or "x"))
    return fig


def prediction_bar(predictions: Sequence[dict], title: str = "Top predictions") -> go.Figure:
    """Horizontal bars of ``[{index, name, probability}]``, most probable on top."""
    names = [plotly_text(f"{p['name']} ({p['index']})") for p in predictions]
    probs = [float(p["probability"]) for p in predictions]
    fig = go.Figure(go.Bar(x=probs, y=names, orientation="h", text=[f"{q:.1%}" for q in probs],
                           textposition="auto", marker_color="#4c78a8",
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    # Automargins: the class names and the axis title get the room they need wherever the chart is drawn
    # (a report's HTML has none of the page's layout around it).
    fig.update_layout(title=_text(title), margin=_MARGIN, height=110 + 32 * len(names),
                      xaxis=dict(range=[0, 1], tickformat=".0%", dtick=0.25, title="probability", automargin=True),
                      yaxis=dict(autorange="reversed", automargin=True))
    return fig


def image_figure(image: np.ndarray, title: str | None = None, height: int | None = None) -> go.Figure:
    """An H×W×3 uint8 image at its aspect ratio (``height`` in pixels, default: plotly's)."""
    fig = go.Figure(go.Image(source=png_data_uri(image), hoverinfo="skip"))
    fig.update_layout(title=_text(title), margin=_MARGIN, height=height)
    return _hide_axes(fig)


def overlay_figure(image: np.ndarray, heatmap: np.ndarray, colormap: str = "viridis", opacity: float = 0.5,
                   zmin: float | None = None, zmax: float | None = None, title: str | None = None, *,
                   outlines: dict[str, np.ndarray | Sequence[float]] | None = None) -> go.Figure:
    """The map over the image, with a colour bar and the map's value on hover.

    The map is resized to the image (CAM maps are coarse); without ``zmin``/``zmax`` the
    colour range is the map's own (symmetric around zero for the diverging colormap). The image
    underneath is grey, as in ``render.overlay``. ``outlines`` (ground truth, as in ``heatmap_grid``)
    are drawn over the map, opaque, with their names under it.
    """
    h, w = image.shape[:2]
    values = render.resize(heatmap, h, w)
    if zmin is None and zmax is None:
        zmin, zmax = render.grid_ranges([values], colormap, shared=False)[0]
    zmin, zmax = render.value_range(values, zmin, zmax)
    fig = go.Figure([
        go.Image(source=png_data_uri(render.greyscale(image)), hoverinfo="skip"),
        go.Heatmap(z=values, zmin=zmin, zmax=zmax, opacity=opacity,
                   colorscale=plotly_colorscale(colormap), colorbar=_COLOUR_BAR,
                   hovertemplate="x=%{x}, y=%{y}: %{z:.3g}<extra></extra>"),
    ])
    if outlines:
        fig.add_trace(go.Image(source=png_data_uri(_outline_layer((h, w), outlines)), hoverinfo="skip"))
        fig.add_annotation(text=outline_legend(outlines), x=0, y=0, xref="paper", yref="paper", xanchor="left",
                           yanchor="top", yshift=-4, showarrow=False)
    fig.update_layout(title=_text(title), margin=_MARGIN)
    _hide_axes(fig)
    fig.update_yaxes(autorange="reversed")
    return fig


def _outline_layer(shape: tuple[int, int], outlines: dict[str, np.ndarray | Sequence[float]]) -> np.ndarray:
    """The outlines alone as an H×W×4 picture: opaque where drawn, transparent elsewhere (no outline
    colour is black)."""
    drawn = render.draw_outlines(np.zeros((*shape, 3), np.uint8), outlines, size=shape)
    return np.dstack([drawn, np.where(drawn.any(axis=2), 255, 0).astype(np.uint8)])


MIN_CELL_PX = 160
"""The smallest side a grid's map is drawn at: below it a map's structure cannot be read."""
TITLE_FONT_PX = 14
_CHAR_EM = 0.6  # a generous average character width of plotly's font, in ems: estimated titles err on fitting
_LINE_PX = 18  # one line of TITLE_FONT_PX text
_TITLE_LINES = 3
_GAP_PX = 6  # between cells
_COLOUR_BAR_PX = 110  # right margin: the colour bar, its tick values and its title


def title_lines(text: str, width_px: float, max_lines: int = _TITLE_LINES) -> tuple[list[str], bool]:
    """A grid title as lines that fit ``width_px`` at ``TITLE_FONT_PX`` (estimated), and whether it was cut."""
    return fit_lines(text, width_px, max_lines, lambda line: len(line) * TITLE_FONT_PX * _CHAR_EM)


def heatmap_grid(images: np.ndarray | Sequence[np.ndarray], maps: Sequence[Sequence[np.ndarray | None]],
                 row_labels: Sequence[str], col_labels: Sequence[str], colormap: str = "viridis",
                 opacity: float = 0.5, shared_scale: bool | str = True, cell_px: int = 220, *,
                 outlines: dict[str, np.ndarray | Sequence[float]] | None = None) -> go.Figure:
    """A grid of overlays: ``maps[row][col]`` (rows = targets, columns = methods).

    ``images`` is one H×W×3 image for every cell or one per row. With ``shared_scale`` all
    cells use one colour range and one colour bar, so strengths compare across cells; with
    ``"column"`` each column has its own range (one method's maps compare across targets,
    whatever the methods' units), written under the column's title; otherwise (``False``) each
    cell is scaled to its own range, written "lo … hi" under it. ``None`` cells stay empty.
    Row labels are on the left, the colour bar on the right. ``outlines`` (name -> mask or box in
    the images' pixels, see ``render.draw_outlines``) are drawn on every cell and named under the grid.

    The figure has a fixed size: cells of at least ``cell_px`` (and ``MIN_CELL_PX``) a side, titles
    wrapped to their cell and abbreviated past three lines (the full title on hover). A wide grid
    is better cut into pages (``heatmap_grid_pages``) than shrunk by the browser.
    """
    ranges = cell_ranges(maps, len(row_labels), len(col_labels), colormap, shared_scale)
    return _grid_figure(per_row_images(images, len(row_labels)), maps, row_labels, col_labels, ranges, colormap,
                        opacity, shared_scale, cell_px, outlines or {})


def heatmap_grid_pages(images: np.ndarray | Sequence[np.ndarray], maps: Sequence[Sequence[np.ndarray | None]],
                       row_labels: Sequence[str], col_labels: Sequence[str], colormap: str = "viridis",
                       opacity: float = 0.5, shared_scale: bool | str = True, cell_px: int = 220, *,
                       max_cols: int = 4, outlines: dict[str, np.ndarray | Sequence[float]] | None = None
                       ) -> list[go.Figure]:
    """``heatmap_grid`` cut into figures of at most ``max_cols`` columns (all rows each), so no map is
    drawn smaller than ``cell_px``. The colour ranges are those of the whole grid: a shared scale
    stays shared across the pages."""
    if max_cols < 1:
        raise ValueError(f"max_cols must be at least 1; got {max_cols}.")
    n_rows, n_cols = len(row_labels), len(col_labels)
    row_images = per_row_images(images, n_rows)
    ranges = cell_ranges(maps, n_rows, n_cols, colormap, shared_scale)
    pages = []
    for start in range(0, n_cols, max_cols):
        cols = range(start, min(start + max_cols, n_cols))
        pages.append(_grid_figure(row_images, [[maps[r][c] for c in cols] for r in range(n_rows)], row_labels,
                                  [col_labels[c] for c in cols], [ranges[r * n_cols + c] for r in range(n_rows)
                                                                  for c in cols],
                                  colormap, opacity, shared_scale, cell_px, outlines or {}))
    return pages


def _grid_figure(row_images: list[np.ndarray], maps: Sequence[Sequence[np.ndarray | None]],
                 row_labels: Sequence[str], col_labels: Sequence[str], ranges: list[tuple[float, float] | None],
                 colormap: str, opacity: float, shared_scale: bool | str, cell_px: int,
                 outlines: dict[str, np.ndarray | Sequence[float]]) -> go.Figure:
    """``heatmap_grid`` with its colour ranges given (row-major, one per cell), laid out in pixels."""
    n_rows, n_cols = len(row_labels), len(col_labels)
    h, w = row_images[0].shape[:2]
    scale = max(cell_px, MIN_CELL_PX) / min(h, w)
    cell_w, cell_h = round(w * scale), round(h * scale)
    range_px = _LINE_PX if shared_scale is False else 0  # each map's range under it
    gap_x, gap_y = _GAP_PX, _GAP_PX + range_px
    plot_w, plot_h = n_cols * cell_w + (n_cols - 1) * gap_x, n_rows * cell_h + (n_rows - 1) * gap_y
    fig = make_subplots(rows=n_rows, cols=n_cols, horizontal_spacing=gap_x / plot_w, vertical_spacing=gap_y / plot_h)
    for i, span in enumerate(ranges):
        r, c = divmod(i, n_cols)
        if maps[r][c] is None:
            continue
        cell = render.overlay(row_images[r], maps[r][c], colormap, opacity, *span)
        if outlines:
            cell = render.draw_outlines(cell, outlines, size=row_images[r].shape[:2])
        fig.add_trace(go.Image(source=png_data_uri(cell), hoverinfo="skip"), row=r + 1, col=c + 1)

    def centre_x(c: int) -> float:
        return (c * (cell_w + gap_x) + cell_w / 2) / plot_w

    def bottom_y(r: int) -> float:
        return 1 - (r * (cell_h + gap_y) + cell_h) / plot_h

    font = dict(size=TITLE_FONT_PX)
    col_lines = 0
    for c, label in enumerate(col_labels):  # column titles first, then row titles: the order pages' tests read
        lines, cut = title_lines(label, cell_w)
        text = "<br>".join(plotly_text(line) for line in lines)
        if shared_scale == "column":
            text += f"<br><sub>{column_range_text(ranges, c, n_cols)}</sub>"
        col_lines = max(col_lines, len(lines) + (shared_scale == "column"))
        fig.add_annotation(text=text, hovertext=plotly_text(label) if cut else None, x=centre_x(c), y=1,
                           xref="paper", yref="paper", xanchor="center", yanchor="bottom", yshift=2, width=cell_w,
                           showarrow=False, font=font)
    row_lines = 0
    for r, label in enumerate(row_labels):
        lines, cut = title_lines(label, cell_h)
        row_lines = max(row_lines, len(lines))
        fig.add_annotation(text="<br>".join(plotly_text(line) for line in lines),
                           hovertext=plotly_text(label) if cut else None, x=0, y=bottom_y(r) + cell_h / 2 / plot_h,
                           xref="paper", yref="paper", xanchor="right", yanchor="middle", xshift=-4, textangle=-90,
                           width=cell_h, showarrow=False, font=font)
    if range_px:
        for i, span in enumerate(ranges):
            if span is not None:
                r, c = divmod(i, n_cols)
                fig.add_annotation(text=range_text(span), x=centre_x(c), y=bottom_y(r), xref="paper", yref="paper",
                                   xanchor="center", yanchor="top", showarrow=False, font=font)
    legend_px = 0
    if outlines:
        legend_px = _LINE_PX + 4
        fig.add_annotation(text=outline_legend(outlines), x=0, y=0, xref="paper", yref="paper", xanchor="left",
                           yanchor="top", yshift=-range_px - 4, showarrow=False, font=font)
    present = [s for s in ranges if s is not None]
    if present:
        fig.add_trace(_colour_bar_marker(colormap, present[0] if shared_scale is True else None,
                                         "each column's range" if shared_scale == "column" else "range under each map"))
    margin = dict(l=10 + _LINE_PX * row_lines, r=_COLOUR_BAR_PX if present else 10, t=10 + _LINE_PX * col_lines,
                  b=10 + range_px + legend_px)
    fig.update_layout(margin=margin, width=margin["l"] + plot_w + margin["r"],
                      height=margin["t"] + plot_h + margin["b"])
    return _hide_axes(fig)


def range_text(span: tuple[float, float]) -> str:
    """A colour range as written under a map or a column's title: ``"lo … hi"``."""
    return f"{span[0]:.3g} … {span[1]:.3g}"


def outline_legend(outlines: dict[str, object]) -> str:
    """The names of the outlines on a grid, each after a square of its colour (plotly text)."""
    return "outlines: " + "   ".join(f'<span style="color:rgb{colour}">■</span> {plotly_text(name)}'
                                     for name, colour in render.outline_colours(list(outlines)).items())


_AXIS_PX = 60  # under a plot with a visible x-axis: its tick labels and title
_BOTTOM_LEGEND_PX = 30  # a legend in the figure's bottom row (``_LEGEND``)


def with_caption(fig: go.Figure, lines: Sequence[str], font_px: int = 14) -> go.Figure:
    """A copy of the figure with ``lines`` (model, image, target, parameters...) written under it, for
    static exports that travel without the page around them.

    The bottom margin is set to hold, from the plot down, the x-axis (when one is shown), a bottom legend
    (moved to sit on the caption) and the caption, so plotly never has to push the margin over it.
    """
    out = go.Figure(fig)
    layout = out.layout
    height = layout.height or 450  # plotly's defaults
    bottom = 80 if layout.margin.b is None else layout.margin.b
    width = (layout.width or 700) - 20
    wrapped = [part for line in lines
               for part in fit_lines(line, width, 20, lambda text: len(text) * font_px * _CHAR_EM)[0]]
    caption_px = len(wrapped) * round(font_px * 1.3) + 10
    axis_px = _AXIS_PX if any(layout[k].visible is not False for k in layout.to_plotly_json()
                              if k.startswith("xaxis")) and out.data else 0
    bottom_legend = layout.legend.yref == "container" and not layout.legend.y and layout.showlegend is not False \
        and sum(trace.showlegend is not False for trace in out.data) > 1
    legend_px = _BOTTOM_LEGEND_PX if bottom_legend else 0
    grown = axis_px + legend_px + caption_px
    out.add_annotation(text="<br>".join(plotly_text(line) for line in wrapped), x=0, y=0, xref="paper",
                       yref="paper", xanchor="left", yanchor="top", yshift=-(bottom + axis_px + legend_px),
                       align="left", showarrow=False, font=dict(size=font_px))
    out.update_layout(height=height + grown, margin_b=bottom + grown)
    if bottom_legend:
        out.update_layout(legend_y=caption_px / (height + grown))
    return out


def cell_ranges(maps: Sequence[Sequence[np.ndarray | None]], n_rows: int, n_cols: int, colormap: str,
                shared_scale: bool | str) -> list[tuple[float, float] | None]:
    """The colour range of every cell, row-major: one for the grid (``True``), one per column
    (``"column"``) or one per map (``False``); shared by ``heatmap_grid`` and ``ui.export.grid_png``."""
    if shared_scale == "column":
        columns = [render.grid_ranges([maps[r][c] for r in range(n_rows)], colormap, shared=True)
                   for c in range(n_cols)]
        return [columns[c][r] for r in range(n_rows) for c in range(n_cols)]
    if shared_scale not in (True, False):
        raise ValueError(f"shared_scale must be True, False or 'column'; got {shared_scale!r}.")
    return render.grid_ranges([maps[r][c] for r in range(n_rows) for c in range(n_cols)], colormap, shared_scale)


def column_range_text(ranges: Sequence[tuple[float, float] | None], col: int, n_cols: int) -> str:
    """``"lo … hi"`` of a column's shared range (empty when every cell of the column failed)."""
    span = next((s for s in ranges[col::n_cols] if s is not None), None)
    return "" if span is None else range_text(span)


def outline_regions(fig: go.Figure, regions: dict[tuple[int, int], np.ndarray], name: str = "region",
                    colour: str = "#00e600") -> go.Figure:
    """Mark boolean H×W ``regions`` on cells ``(row, col)`` of a ``heatmap_grid`` (same size as its
    images): open squares on the region's boundary pixels, so a region of a few pixels is still seen
    and the map under it stays visible."""
    for (row, col), region in regions.items():
        region = np.pad(np.asarray(region, dtype=bool), 1)
        inner = region[1:-1, 1:-1] & region[:-2, 1:-1] & region[2:, 1:-1] & region[1:-1, :-2] & region[1:-1, 2:]
        ys, xs = np.nonzero(region[1:-1, 1:-1] & ~inner)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", showlegend=False, name=plotly_text(name),
                                 marker=dict(symbol="square-open", size=9, color=colour, line=dict(width=2)),
                                 hovertemplate="%{fullData.name}: x=%{x}, y=%{y}<extra></extra>"),
                      row=row + 1, col=col + 1)
    return fig


def _colour_bar_marker(colormap: str, span: tuple[float, float] | None,
                       relative_title: str = "range under each map") -> go.Scatter:
    """An invisible marker that carries a grid's colour bar: the shared ``span``, or, when maps
    have their own ranges (``None``, written under each map or column title), ticks naming the
    ends of those ranges."""
    if span is not None:
        lo, hi, ticks, title = *span, {}, ""
    else:
        names = render.relative_ticks(colormap)
        lo, hi, title = 0.0, 1.0, relative_title
        ticks = dict(tickvals=list(names), ticktext=list(names.values()))
    return go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                      marker=dict(colorscale=plotly_colorscale(colormap), cmin=lo, cmax=hi, color=[lo],
                                  showscale=True, colorbar=dict(thickness=12, x=1, xanchor="left", xpad=8,
                                                                title=dict(text=title, side="right"),
                                                                **ticks)))


def per_row_images(images: np.ndarray | Sequence[np.ndarray], n_rows: int) -> list[np.ndarray]:
    """One H×W×3 image per grid row: the same image repeated, or the given list (its length checked)."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        return [images] * n_rows
    if len(images) != n_rows:
        raise ValueError(f"Expected one image or {n_rows} images, got {len(images)}.")
    return list(images)


def mask_figure(image: np.ndarray, object_mask: np.ndarray | None = None, part_mask: np.ndarray | None = None,
                box: Sequence[int] | None = None, title: str | None = "Ground truth",
                height: int | None = None) -> go.Figure:
    """The grey image with the object mask (blue), the part mask (orange) and the box (red).

    Grey, so a blue object does not hide its mask. A part mask equal to the object mask
    (classes without a distinct part) is not drawn.
    """
    shown = render.greyscale(image).astype(np.float32)
    if part_mask is not None and object_mask is not None and np.array_equal(part_mask, object_mask):
        part_mask = None
    for mask, colour in ((object_mask, (60, 120, 255)), (part_mask, (255, 150, 0))):
        if mask is not None:
            m = np.asarray(mask, dtype=bool)[..., None]
            shown = np.where(m, shown * 0.4 + np.asarray(colour, np.float32) * 0.6, shown)
    fig = image_figure(shown.round().astype(np.uint8), title, height)
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        fig.add_shape(type="rect", x0=x0 - 0.5, y0=y0 - 0.5, x1=x1 - 0.5, y1=y1 - 0.5,
                      line=dict(color="red", width=2))
    return fig


def line_figure(x: Sequence[float], series: dict[str, Sequence[float]], x_title: str = "", y_title: str = "",
                title: str | None = None, markers: bool = True) -> go.Figure:
    """One line per named series over a shared x (curves: deletion, convergence, loss...)."""
    mode = "lines+markers" if markers else "lines"
    fig = go.Figure([go.Scatter(x=list(x), y=list(ys), mode=mode, name=plotly_text(name),
                                line=dict(color=_PALETTE[i % len(_PALETTE)]))
                     for i, (name, ys) in enumerate(series.items())])
    fig.update_layout(title=_text(title), margin=_MARGIN, xaxis_title=_text(x_title), yaxis_title=_text(y_title),
                      legend=_LEGEND)
    return fig


def table_figure(columns: Sequence[str], rows: Sequence[Sequence], title: str | None = None) -> go.Figure:
    """A small table (e.g. logits before/after occlusion) that exports with its figure."""
    cells = [[row[i] for row in rows] for i in range(len(columns))]
    cells = [[f"{v:.4g}" if isinstance(v, (float, np.floating)) else _text(v) if isinstance(v, str) else v
              for v in col] for col in cells]
    fig = go.Figure(go.Table(header=dict(values=[plotly_text(c) for c in columns], align="left"),
                             cells=dict(values=cells, align="left")))
    fig.update_layout(title=_text(title), margin=_MARGIN, height=60 + 28 * (len(rows) + 1))
    return fig


# ------------------------------------------- occlusion, DeconvNet, inversion (Zeiler & Fergus page)
def _occluder_centres(starts: Sequence[int], window: int, size: int) -> list[float]:
    """Pixel coordinate of each occluder's centre (the last windows are cut at the border)."""
    return [(s + min(s + window, size)) / 2 - 0.5 for s in starts]


def position_map_figure(image: np.ndarray, grid: np.ndarray, ys: Sequence[int], xs: Sequence[int], window: int,
                        colormap: str = "viridis", title: str | None = None, value_label: str = "value",
                        opacity: float = 0.6) -> go.Figure:
    """A value per occluder position (Py×Px), each cell drawn over the image at its occluder's centre."""
    h, w = image.shape[:2]
    fig = go.Figure([
        go.Image(source=png_data_uri(render.greyscale(image)), hoverinfo="skip"),
        go.Heatmap(z=grid, x=_occluder_centres(xs, window, w), y=_occluder_centres(ys, window, h), opacity=opacity,
                   colorscale=plotly_colorscale(colormap),
                   colorbar=_COLOUR_BAR | dict(title_text=plotly_text(value_label)),
                   hovertemplate=f"occluder centre x=%{{x}}, y=%{{y}}<br>{plotly_text(value_label)}: %{{z:.3g}}"
                                 "<extra></extra>"),
    ])
    fig.update_layout(title=_text(title), margin=_MARGIN)
    _hide_axes(fig)
    fig.update_yaxes(autorange="reversed")
    return fig


def categorical_map_figure(image: np.ndarray, classes: np.ndarray, names: dict[int, str], ys: Sequence[int],
                           xs: Sequence[int], window: int, title: str | None = None, opacity: float = 0.6) -> go.Figure:
    """The most probable class at each occluder position, one colour per class, with a legend."""
    from plotly.colors import qualitative

    palette = qualitative.Plotly + qualitative.Dark24 + qualitative.Light24
    present = sorted(names)
    slot = {c: i for i, c in enumerate(present)}
    k = len(present)
    z = np.vectorize(slot.get)(classes).astype(float)
    colours = [palette[i % len(palette)] for i in range(k)]
    scale = [stop for i, c in enumerate(colours) for stop in ([i / k, c], [(i + 1) / k, c])]  # flat steps
    h, w = image.shape[:2]
    label = np.vectorize(lambda c: plotly_text(f"{names[int(c)]} ({int(c)})"))(classes)
    fig = go.Figure([
        go.Image(source=png_data_uri(render.greyscale(image)), hoverinfo="skip"),
        go.Heatmap(z=z, x=_occluder_centres(xs, window, w), y=_occluder_centres(ys, window, h), zmin=-0.5,
                   zmax=k - 0.5, colorscale=scale, showscale=False, opacity=opacity, customdata=label,
                   hovertemplate="occluder centre x=%{x}, y=%{y}<br>%{customdata}<extra></extra>"),
    ])
    for c in present:  # legend entries: invisible markers in each class's colour
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=plotly_text(f"{names[c]} ({c})"),
                                 marker=dict(color=colours[slot[c]], size=12, symbol="square")))
    fig.update_layout(title=_text(title), margin=_MARGIN, showlegend=True,
                      legend=_LEGEND | dict(title="most probable class", yref="paper", y=-0.02, yanchor="top"))
    _hide_axes(fig)
    fig.update_yaxes(autorange="reversed")
    return fig


def image_grid_figure(images: Sequence[np.ndarray], labels: Sequence[str], cols: int = 3, cell_px: int = 200,
                      title: str | None = None) -> go.Figure:
    """Images (H×W×3 uint8) in a grid with a caption each (DeconvNet projections, frames)."""
    n = len(images)
    rows = max(1, -(-n // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[plotly_text(label) for label in labels],
                        horizontal_spacing=0.02,
                        vertical_spacing=0.06)
    for i, image in enumerate(images):
        fig.add_trace(go.Image(source=png_data_uri(image), hoverinfo="skip"), row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(title=_text(title), margin=dict(l=10, r=10, t=60 if title else 30, b=10),
                      height=(60 if title else 30) + cell_px * rows, width=20 + cell_px * cols)
    return _hide_axes(fig)


def history_figure(history: dict[str, np.ndarray], series_names: Sequence[str], titles: dict[str, str],
                   title: str | None = None) -> go.Figure:
    """Curves against the optimisation step: one panel per term, one line per series (row).

    ``history[term]`` is S×T (steps × series); ``titles`` picks the terms to draw and names them.
    """
    terms = [t for t in titles if t in history]
    fig = make_subplots(rows=len(terms), cols=1, shared_xaxes=True,
                        subplot_titles=[plotly_text(titles[t]) for t in terms], vertical_spacing=0.08)
    for r, term in enumerate(terms):
        values = np.asarray(history[term])
        steps = np.arange(1, len(values) + 1)
        for i, name in enumerate(series_names):
            fig.add_trace(go.Scatter(x=steps, y=values[:, i], mode="lines", name=plotly_text(name), legendgroup=str(i),
                                     showlegend=r == 0, line=dict(color=_PALETTE[i % len(_PALETTE)])),
                          row=r + 1, col=1)
    fig.update_xaxes(title_text="step", row=len(terms), col=1)
    # The legend stays on top here: the figure is tall, and the curves are read from the top panel down.
    fig.update_layout(title=_text(title), margin=dict(l=10, r=10, t=60, b=10), height=80 + 170 * len(terms),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02))
    return fig


def learning_curves_figure(curves: dict[str, Sequence[float]],
                           title: str = "Support networks: MSE against the modified logits") -> go.Figure:
    """One curve per network; epoch 0 is before training. Log scale: the start grows as α²."""
    epochs = max(len(c) for c in curves.values())
    fig = line_figure(range(epochs), curves, "epoch (0 = before training)", "MSE", title)
    fig.update_yaxes(type="log")
    return fig


def masks_figure(masks: Sequence[np.ndarray], labels: Sequence[str], cell_px: int = 140) -> go.Figure:
    """H×W masks in [0, 1] in one row, in grey (white = kept); e.g. RISE's random masks."""
    grey = [np.repeat((np.clip(m, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2) for m in masks]
    return image_grid_figure(grey, labels, cols=len(grey), cell_px=cell_px)
