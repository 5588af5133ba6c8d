"""PNG downloads composed with PIL (plotly's static export needs kaleido, which we do not ship);
cells are coloured by ``xai_core.render``, as the figures' are, and the text is DejaVu Sans (shipped
in ``assets/fonts``: PIL's default bitmap font has no ∂, ×, α or …)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from xai_core import render

from .figures import cell_ranges, column_range_text, per_row_images, range_text
from .labels import fit_lines

FONT_PATH = Path(__file__).resolve().parents[1] / "assets" / "fonts" / "DejaVuSans.ttf"
FONT_PX = 16
_TITLE_LINES = 3
_GAP_PX = 4  # between cells
_BAR_PX = 12
_PAD_PX = 6
_ROW_LABEL_PX = 200  # the widest a row label's column gets before its labels wrap
_MIN_BAR_PX = 300  # the colour bar's shortest length: its notes fit under a grid of one small cell


@lru_cache(maxsize=4)
def font(size: int = FONT_PX) -> ImageFont.FreeTypeFont:
    """The exports' font at ``size`` pixels."""
    return ImageFont.truetype(str(FONT_PATH), size)


def _enlarged(image: np.ndarray, min_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    factor = -(-min_side // min(h, w))  # ceil: an integer factor keeps pixels square
    if factor <= 1:
        return image
    return np.asarray(Image.fromarray(image).resize((w * factor, h * factor), Image.NEAREST))


def grid_png(images: np.ndarray | Sequence[np.ndarray], maps: Sequence[Sequence[np.ndarray | None]],
             row_labels: Sequence[str], col_labels: Sequence[str], colormap: str = "viridis",
             opacity: float = 0.5, shared_scale: bool | str = True, min_cell_px: int = 224, *,
             outlines: dict[str, np.ndarray | Sequence[float]] | None = None, caption: Sequence[str] = ()) -> bytes:
    """The grid of ``figures.heatmap_grid`` as one PNG: titles wrapped to their cell (abbreviated with
    "…" past three lines), row labels on the left, the real-valued ranges (the colour bar's for a shared
    scale, each column's under its title, each map's under it), the ``outlines`` on every cell and
    named under the colour bar, and the ``caption`` lines (model, image, target, parameters) at the bottom.

    Small images (the embedded dataset's 64×64) are enlarged to ``min_cell_px`` with
    nearest-neighbour, so pixels stay sharp while the maps are interpolated over them.
    """
    n_rows, n_cols = len(row_labels), len(col_labels)
    originals = per_row_images(images, n_rows)
    row_images = [_enlarged(img, min_cell_px) for img in originals]
    ranges = cell_ranges(maps, n_rows, n_cols, colormap, shared_scale)
    text_font, line_px = font(), font().size + 4
    h, w = row_images[0].shape[:2]

    def fit(text: str, width: float, max_lines: int) -> list[str]:
        return fit_lines(text, width, max_lines, text_font.getlength)[0]

    column_ranges = [[column_range_text(ranges, c, n_cols)] if shared_scale == "column" else [] for c in range(n_cols)]
    col_text = [fit(label, w - 2, _TITLE_LINES) + extra for label, extra in zip(col_labels, column_ranges)]
    label_w = int(min(_ROW_LABEL_PX, max([text_font.getlength(str(s)) for s in row_labels], default=0))) + 2 * _PAD_PX
    row_text = [fit(label, label_w - 2 * _PAD_PX, max(1, h // line_px)) for label in row_labels]
    range_px = line_px if shared_scale is False else 0
    pitch_y = h + _GAP_PX + range_px
    top = _PAD_PX + line_px * max((len(lines) for lines in col_text), default=0)
    grid_w = n_cols * (w + _GAP_PX) - _GAP_PX
    bar_top = top + n_rows * pitch_y
    canvas_w = label_w + int(max(grid_w, _legend_width(outlines or {}), _MIN_BAR_PX)) + _PAD_PX
    caption_lines = [part for line in caption for part in fit(line, canvas_w - 2 * _PAD_PX, 20)]
    bar_span = next((s for s in ranges if s is not None), None) if shared_scale is True else None
    legend_top = bar_top + _BAR_PX + line_px * (1 if bar_span else 2) + _PAD_PX
    caption_top = legend_top + (line_px + _PAD_PX if outlines else 0)
    canvas = Image.new("RGB", (canvas_w, caption_top + line_px * len(caption_lines) + _PAD_PX), "white")
    draw = ImageDraw.Draw(canvas)

    def write(xy: tuple[float, float], text: str) -> None:
        draw.text(xy, text, fill="black", font=text_font)

    for c, lines in enumerate(col_text):
        left = label_w + c * (w + _GAP_PX)
        for i, line in enumerate(lines):
            write((left + (w - text_font.getlength(line)) / 2, top - line_px * (len(lines) - i)), line)
    for r in range(n_rows):
        cell_top = top + r * pitch_y
        lines = row_text[r]
        first_line = cell_top + (h - line_px * len(lines)) / 2  # the label's lines centred on the row
        for i, line in enumerate(lines):
            write((label_w - _PAD_PX - text_font.getlength(line), first_line + i * line_px), line)
        for c in range(n_cols):
            heatmap, span = maps[r][c], ranges[r * n_cols + c]
            if heatmap is None:
                continue
            left = label_w + c * (w + _GAP_PX)
            cell = render.overlay(row_images[r], heatmap, colormap, opacity, *span)
            if outlines:
                cell = render.draw_outlines(cell, outlines, size=originals[r].shape[:2])
            canvas.paste(Image.fromarray(cell), (left, cell_top))
            if range_px:
                text = range_text(span)
                write((left + (w - text_font.getlength(text)) / 2, cell_top + h + 1), text)
    _colour_bar(canvas, draw, (label_w, bar_top), max(grid_w, _MIN_BAR_PX), colormap, bar_span,
                "each column's range: under its title" if shared_scale == "column" else "each map's range: under it")
    if outlines:
        _outline_legend(draw, (label_w, legend_top), outlines)
    for i, line in enumerate(caption_lines):
        write((_PAD_PX, caption_top + i * line_px), line)
    return render.png_bytes(np.asarray(canvas))


def _colour_bar(canvas: Image.Image, draw: ImageDraw.ImageDraw, corner: tuple[int, int], width: int,
                colormap: str, span: tuple[float, float] | None, note: str) -> None:
    """The grid's colour bar under it: the shared ``span``'s values, or (``None``) the ends of the
    ranges written on the grid, with the ``note`` saying where on the line below."""
    left, top = corner
    ramp = np.repeat(np.linspace(0.0, 1.0, width, dtype=np.float32)[None], _BAR_PX, axis=0)
    canvas.paste(Image.fromarray(render.colorize(ramp, colormap, 0.0, 1.0)), corner)
    if span is None:
        ticks = render.relative_ticks(colormap)
    else:
        lo, hi = span
        ticks = {0.0: f"{lo:.3g}", 1.0: f"{hi:.3g}"} | ({0.5: "0"} if colormap == render.DIVERGING else {})
    text_font = font()
    for position, text in ticks.items():
        x = left + position * (width - text_font.getlength(text))  # the end labels stay inside the bar's span
        draw.text((x, top + _BAR_PX + 2), text, fill="black", font=text_font)
    if span is None:
        draw.text((left, top + _BAR_PX + 2 + text_font.size + 4), note, fill="black", font=text_font)


def _outline_legend(draw: ImageDraw.ImageDraw, corner: tuple[float, float],
                    outlines: dict[str, np.ndarray | Sequence[float]]) -> None:
    """A square of each outline's colour, followed by its name."""
    text_font = font()
    x, top = corner
    side = text_font.size - 2
    for name, colour in render.outline_colours(list(outlines)).items():
        draw.rectangle((x, top + 2, x + side, top + 2 + side), fill=colour, outline="black")
        draw.text((x + side + _PAD_PX, top), str(name), fill="black", font=text_font)
        x += _legend_entry_width(name)


def _legend_entry_width(name: str) -> float:
    """An outline legend entry's width: its square, its name and the space after it."""
    return font().size - 2 + 4 * _PAD_PX + font().getlength(str(name))


def _legend_width(outlines: dict[str, object]) -> float:
    """The outline legend's width (0 without outlines)."""
    return sum(_legend_entry_width(name) for name in outlines)
