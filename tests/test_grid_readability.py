"""Grids that stay readable: titles that never overlap, maps never drawn small, real-valued ranges,
ground-truth outlines on every map, and PNG exports with a real font and their caption."""
from __future__ import annotations

import base64
import html
import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from ui import export, figures
from xai_core import render

# A plotly font's characters are narrower than this on average: an estimate that errs on the wide side.
CHAR_EM = 0.6
LONG_WORDS = "Integrated Gradients with a black baseline and fifty interpolation steps over noisy copies"


def _grid_maps(n_rows: int, n_cols: int, side: int = 8) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return [[rng.normal(size=(side, side)).astype(np.float32) * (1 + r + c) for c in range(n_cols)]
            for r in range(n_rows)]


def _long_names(prefix: str, n: int) -> list[str]:
    # Long, alike names: "Supercalifragilistic..." is one word wider than any cell.
    return [f"{prefix} {i}: {LONG_WORDS}" if i % 3 else f"Supercalifragilisticexpialidocious{i}{prefix}" * 2
            for i in range(n)]


def _plot_px(fig: go.Figure) -> tuple[float, float]:
    m = fig.layout.margin
    return fig.layout.width - m.l - m.r, fig.layout.height - m.t - m.b


def _title_boxes(fig: go.Figure) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Estimated extents of the column titles along x and of the row titles along y, in pixels."""
    plot_w, plot_h = _plot_px(fig)
    columns, rows = [], []
    for a in fig.layout.annotations:
        lines = [html.unescape(line) for line in a.text.split("<br>") if not line.startswith("<sub>")]
        extent = max(len(line) for line in lines) * a.font.size * CHAR_EM
        if a.textangle == -90:
            rows.append((a.y * plot_h - extent / 2, a.y * plot_h + extent / 2))
        elif a.yanchor == "bottom":
            columns.append((a.x * plot_w - extent / 2, a.x * plot_w + extent / 2))
    return columns, rows


def _cell_extents(fig: go.Figure, axis: str) -> list[float]:
    """Each subplot's size in pixels along ``axis`` ("x" or "y")."""
    plot_w, plot_h = _plot_px(fig)
    size = plot_w if axis == "x" else plot_h
    return [(fig.layout[k].domain[1] - fig.layout[k].domain[0]) * size
            for k in fig.layout.to_plotly_json() if k.startswith(f"{axis}axis")]


def _assert_disjoint(spans: list[tuple[float, float]]) -> None:
    spans = sorted(spans)
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:])), spans


def test_titles_of_a_16_by_8_grid_with_long_names_wrap_and_never_overlap():
    image = np.full((32, 32, 3), 90, np.uint8)
    rows, cols = _long_names("target", 8), _long_names("method", 16)
    rows[1], cols[2] = "<b>cat</b> & dog", "∂y/∂x × α’ <i>"
    fig = figures.heatmap_grid(image, _grid_maps(8, 16), rows, cols, cell_px=figures.MIN_CELL_PX)
    columns, row_spans = _title_boxes(fig)
    assert len(columns) == 16 and len(row_spans) == 8
    _assert_disjoint(columns)
    _assert_disjoint(row_spans)
    assert all(a.font.size >= 14 for a in fig.layout.annotations)
    for a in fig.layout.annotations:  # the lines (about 1.3 em each) fit the margin beside or above the cells
        stacked = len(a.text.split("<br>")) * a.font.size * 1.3
        assert stacked <= (fig.layout.margin.l if a.textangle == -90 else fig.layout.margin.t)
    titles = [a for a in fig.layout.annotations if a.textangle != -90][:16] + \
        [a for a in fig.layout.annotations if a.textangle == -90]
    for title, label in zip(titles, cols + rows):
        lines = title.text.split("<br>")
        assert 1 <= len(lines) <= 3
        shown = html.unescape(" ".join(lines))
        if shown.endswith("…"):  # abbreviated: the start of the label, and all of it on hover
            assert label.startswith(shown[:-1].rstrip()) and html.unescape(title.hovertext) == label
        else:
            assert shown == label and title.hovertext is None
    # User text is text: escaped, never plotly's pseudo-HTML.
    assert titles[2].text.startswith("∂y/∂x × α’ &lt;i&gt;") and "<i>" not in titles[2].text
    assert "&lt;b&gt;cat&lt;/b&gt; &amp; dog" == titles[16 + 1].text


def test_every_page_of_a_wide_grid_keeps_square_cells_of_readable_size_and_one_shared_scale():
    image = np.full((24, 24, 3), 90, np.uint8)
    maps = _grid_maps(8, 16)
    pages = figures.heatmap_grid_pages(image, maps, _long_names("t", 8), _long_names("m", 16), max_cols=5, cell_px=100)
    assert [sum(isinstance(t, go.Image) for t in page.data) for page in pages] == [40, 40, 40, 8]
    for page in pages:
        widths, heights = _cell_extents(page, "x"), _cell_extents(page, "y")
        assert min(widths + heights) >= figures.MIN_CELL_PX - 0.5  # cell_px=100 is raised to the minimum
        assert max(widths) - min(heights) < 1  # square, as the images are
        columns, _ = _title_boxes(page)
        _assert_disjoint(columns)
    everything = np.concatenate([m.ravel() for row in maps for m in row])
    bars = [next(t for t in page.data if isinstance(t, go.Scatter)).marker for page in pages]
    assert {(bar.cmin, bar.cmax) for bar in bars} == {(float(everything.min()), float(everything.max()))}
    single = figures.heatmap_grid(image, maps, _long_names("t", 8), _long_names("m", 16), cell_px=200)
    assert min(_cell_extents(single, "x") + _cell_extents(single, "y")) >= 200 - 0.5
    with pytest.raises(ValueError, match="max_cols"):
        figures.heatmap_grid_pages(image, maps, _long_names("t", 8), _long_names("m", 16), max_cols=0)


def test_per_map_scaling_writes_each_maps_own_range_under_it():
    image = np.zeros((16, 16, 3), np.uint8)
    maps = [[np.array([[0.5, 2.0]]), None], [np.array([[-3.0, 40.0]]), np.array([[1e-4, 7e-4]])]]
    fig = figures.heatmap_grid(image, maps, ["t1", "t2"], ["m1", "m2"], shared_scale=False)
    ranges = [a.text for a in fig.layout.annotations if a.yanchor == "top" and "…" in a.text]
    assert ranges == ["0.5 … 2", "-3 … 40", "0.0001 … 0.0007"]
    # Each text lies under its own cell (row-major: cells x, x3, x4): centred on it, at its bottom edge.
    under = [a for a in fig.layout.annotations if a.text in ranges]
    for text, axis in zip(under, ("", "3", "4")):
        x_domain, y_domain = fig.layout[f"xaxis{axis}"].domain, fig.layout[f"yaxis{axis}"].domain
        assert text.x == pytest.approx(sum(x_domain) / 2) and text.y == pytest.approx(y_domain[0])
    shared = figures.heatmap_grid(image, maps, ["t1", "t2"], ["m1", "m2"], shared_scale=True)
    assert not [a for a in shared.layout.annotations if "…" in a.text]  # the colour bar has the values


def _magenta(canvas: np.ndarray) -> np.ndarray:
    return (canvas == render.OUTLINE_COLOURS[0]).all(axis=-1)


def test_outlines_are_drawn_on_every_cell_of_the_png_and_the_figure_and_named():
    image = np.full((64, 64, 3), 120, np.uint8)
    flat = [[np.zeros((8, 8), np.float32) + c + r for c in range(2)] for r in range(2)]
    mask = np.zeros((64, 64), bool)
    mask[40:56, 10:30] = True
    outlines = {"object box": (8, 4, 40, 36), "object mask": mask}
    png = np.asarray(Image.open(io.BytesIO(export.grid_png(image, flat, ["a", "b"], ["m", "n"], "gray", 0.0,
                                                           min_cell_px=128, outlines=outlines))).convert("RGB"))
    box = _magenta(png)
    cells = []
    ys, xs = np.nonzero(box)
    # The box, enlarged ×2 with the image: 64×64 squares of magenta edges, one per cell.
    for top in np.unique(ys):
        for left in np.unique(xs):
            if box[top:top + 64, left].all() and box[top, left:left + 64].all() and \
                    box[top + 63, left:left + 64].all() and box[top:top + 64, left + 63].all() and \
                    not box[top + 10:top + 54, left + 10:left + 54].any():
                cells.append((top, left))
    assert len(cells) == 4
    green = (png == render.OUTLINE_COLOURS[1]).all(axis=-1)
    for top, left in cells:  # the mask's outline, at its place relative to the box
        cell_top, cell_left = top - 8, left - 16
        assert green[cell_top + 80, cell_left + 20:cell_left + 60].all()  # the mask's top edge, ×2
        assert not green[cell_top + 84:cell_top + 110, cell_left + 24:cell_left + 56].any()
    below = max(top for top, _ in cells) + 128
    assert box[below:].any() and green[below:].any()  # the legend's colour squares under the grid
    fig = figures.heatmap_grid(image, flat, ["a", "b"], ["m", "n"], "gray", 0.0, outlines=outlines)
    for trace in (t for t in fig.data if isinstance(t, go.Image)):
        cell = np.asarray(Image.open(io.BytesIO(base64.b64decode(trace.source.split(",", 1)[1]))).convert("RGB"))
        assert np.array_equal(cell, render.draw_outlines(render.overlay(image, flat[0][0], "gray", 0.0), outlines))
    legend = fig.layout.annotations[-1].text
    assert "object box" in legend and "object mask" in legend and "rgb(255, 0, 255)" in legend


def test_png_text_uses_a_font_with_the_symbols_and_at_least_14_px():
    text_font = export.font()
    assert text_font.size >= 14
    notdef = text_font.getmask("\ue000")  # a private-use code point: the font has no glyph for it
    assert bytes(text_font.getmask("\ue001")) == bytes(notdef)  # the comparison sees a missing glyph
    for char in "∂y/∂x × α’…":
        if char != " ":
            mask = text_font.getmask(char)
            assert (mask.size, bytes(mask)) != (notdef.size, bytes(notdef)), char
    image = np.full((16, 16, 3), 255, np.uint8)
    png = np.asarray(Image.open(io.BytesIO(export.grid_png(image, [[np.zeros((4, 4))]], [""], ["Ag"], "gray", 1.0,
                                                           min_cell_px=160))).convert("L"))
    cell_top = np.flatnonzero((png < 60).sum(axis=1) > 100)[0]  # the first black row of the (black) cell
    ink = np.flatnonzero((png[:cell_top] < 128).any(axis=1))
    assert ink.max() - ink.min() + 1 >= 14


def _ink_bands(rows: np.ndarray) -> int:
    inked = (rows < 128).any(axis=1).astype(int)
    return int(np.sum(np.diff(np.concatenate([[0], inked])) == 1))


def test_png_caption_lines_are_written_at_the_bottom_and_labels_never_overlap():
    image = np.full((32, 32, 3), 200, np.uint8)
    maps = _grid_maps(2, 6)
    heights = []
    for caption in (["model: embedded"], ["model: embedded", "image: sample 3", "target: cat ∂y/∂x × α’"]):
        png = np.asarray(Image.open(io.BytesIO(export.grid_png(image, maps, _long_names("t", 2), _long_names("m", 6),
                                                               min_cell_px=160, caption=caption))).convert("L"))
        heights.append(png.shape[0])
    line_px = export.font().size + 4
    assert heights[1] - heights[0] == 2 * line_px
    assert _ink_bands(png[-(3 * line_px + export._PAD_PX):]) == 3
    # The long titles stay over their own cell: no ink over the gaps between the cells' columns.
    nonwhite = png < 255
    first_cell_row = np.flatnonzero(nonwhite.sum(axis=1) >= 6 * 160)[0]
    in_cells = nonwhite[first_cell_row:first_cell_row + 100].all(axis=0)  # text is never 100 rows of ink
    x0, x1 = np.flatnonzero(in_cells)[[0, -1]]
    gaps = [x for x in range(x0, x1) if not in_cells[x]]
    assert len(gaps) == 5 * export._GAP_PX
    assert not nonwhite[:first_cell_row, gaps].any()
    assert nonwhite[:first_cell_row].sum() > 1000  # and there are titles up there


def test_with_caption_writes_the_lines_under_the_axis_and_the_legend_and_grows_the_figure():
    fig = figures.line_figure([0, 1], {"a": [1, 2], "b": [2, 1]}, "x", "y")
    fig.update_layout(height=400)
    out = figures.with_caption(fig, ["model: <b>embedded</b>", "target: cat"])
    caption = out.layout.annotations[-1]
    assert caption.text == "model: &lt;b&gt;embedded&lt;/b&gt;<br>target: cat" and caption.font.size >= 14
    grown = out.layout.height - 400
    assert grown > 2 * 14 and out.layout.margin.b - fig.layout.margin.b == grown  # the plot keeps its height
    caption_top = out.layout.margin.b + caption.yshift  # pixels above the figure's bottom
    assert caption_top >= 2 * 14 and -caption.yshift >= fig.layout.margin.b + 50  # clear of the x-axis
    assert out.layout.legend.y * out.layout.height == pytest.approx(caption_top)  # the legend sits on it
    assert not fig.layout.annotations and fig.layout.height == 400  # the given figure is unchanged
    grid = figures.heatmap_grid(np.zeros((8, 8, 3), np.uint8), [[np.eye(8)]], ["t"], ["m"])
    captioned = figures.with_caption(grid, ["one line"])
    assert captioned.layout.margin.b + captioned.layout.annotations[-1].yshift == \
        captioned.layout.height - grid.layout.height  # no axis under a grid: the caption right under it


def test_single_map_figure_draws_the_ground_truth_outline_over_the_map():
    """``overlay_figure(outlines=...)``: a top image layer, opaque exactly on the box's border in the
    box's colour and transparent elsewhere, named under the map."""
    import base64
    import io

    from PIL import Image

    from ui.figures import overlay_figure
    from xai_core import render

    image = np.full((32, 32, 3), 128, np.uint8)
    fig = overlay_figure(image, np.random.default_rng(0).random((32, 32)), outlines={"object box": (8, 8, 24, 24)})
    layer = np.asarray(Image.open(io.BytesIO(base64.b64decode(fig.data[-1].source.split(",", 1)[1]))))
    assert layer.shape == (32, 32, 4)
    colour = render.outline_colours(["object box"])["object box"]
    border = np.zeros((32, 32), bool)
    border[8:24, 8:24] = True
    border[9:23, 9:23] = False
    assert (layer[..., 3] == 255).sum() == border.sum() and (layer[border, 3] == 255).all()
    assert (layer[border, :3] == colour).all()
    assert "object box" in fig.layout.annotations[-1].text
