"""PNG downloads composed with PIL (plotly's static export needs kaleido, which we do not ship);
cells are coloured by ``xai_core.render``, as the figures' are."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from xai_core import render

from .figures import cell_ranges, column_range_text, per_row_images

_LABEL_PX = 18
_BAR_PX = 12


def _enlarged(image: np.ndarray, min_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    factor = -(-min_side // min(h, w))  # ceil: an integer factor keeps pixels square
    if factor <= 1:
        return image
    return np.asarray(Image.fromarray(image).resize((w * factor, h * factor), Image.NEAREST))


def grid_png(images: np.ndarray | Sequence[np.ndarray], maps: Sequence[Sequence[np.ndarray | None]],
             row_labels: Sequence[str], col_labels: Sequence[str], colormap: str = "viridis",
             opacity: float = 0.5, shared_scale: bool | str = True, min_cell_px: int = 224) -> bytes:
    """The grid of ``figures.heatmap_grid`` as one PNG, with row and column labels (and, with
    ``shared_scale="column"``, each column's range after its label).

    Small images (the embedded dataset's 64×64) are enlarged to ``min_cell_px`` with
    nearest-neighbour, so pixels stay sharp while the maps are interpolated over them.
    """
    n_rows, n_cols = len(row_labels), len(col_labels)
    row_images = [_enlarged(img, min_cell_px) for img in per_row_images(images, n_rows)]
    flat = [maps[r][c] for r in range(n_rows) for c in range(n_cols)]
    ranges = cell_ranges(maps, n_rows, n_cols, colormap, shared_scale)
    if shared_scale == "column":
        col_labels = [f"{label}: {column_range_text(ranges, c, n_cols)}" for c, label in enumerate(col_labels)]
    h, w = row_images[0].shape[:2]
    label_w = 8 * max((len(s) for s in row_labels), default=0) + 10
    grid_h = _LABEL_PX + n_rows * (h + 4)
    canvas = Image.new("RGB", (label_w + n_cols * (w + 4), grid_h + _BAR_PX + _LABEL_PX + 4), "white")
    draw = ImageDraw.Draw(canvas)
    _colour_bar(canvas, draw, (label_w, grid_h), n_cols * (w + 4) - 4, colormap,
                next((s for s in ranges if s is not None), None) if shared_scale is True else None,
                "each column's range" if shared_scale == "column" else "each map's own range")
    for c, label in enumerate(col_labels):
        draw.text((label_w + c * (w + 4) + 2, 3), str(label), fill="black")
    for i, (heatmap, span) in enumerate(zip(flat, ranges)):
        r, c = divmod(i, n_cols)
        top = _LABEL_PX + r * (h + 4)
        if c == 0:
            draw.text((4, top + h // 2), str(row_labels[r]), fill="black")
        if heatmap is not None:
            cell = render.overlay(row_images[r], heatmap, colormap, opacity, *span)
            canvas.paste(Image.fromarray(cell), (label_w + c * (w + 4), top))
    return render.png_bytes(np.asarray(canvas))


def _colour_bar(canvas: Image.Image, draw: ImageDraw.ImageDraw, corner: tuple[int, int], width: int,
                colormap: str, span: tuple[float, float] | None, note: str = "each map's own range") -> None:
    """The grid's colour bar under it: the shared ``span``'s values, or (``None``) the ``note``d ranges."""
    left, top = corner
    ramp = np.repeat(np.linspace(0.0, 1.0, width, dtype=np.float32)[None], _BAR_PX, axis=0)
    canvas.paste(Image.fromarray(render.colorize(ramp, colormap, 0.0, 1.0)), corner)
    if span is None:
        ticks = render.relative_ticks(colormap)
    else:
        lo, hi = span
        ticks = {0.0: f"{lo:.3g}", 1.0: f"{hi:.3g}"} | ({0.5: "0"} if colormap == render.DIVERGING else {})
    for position, text in ticks.items():
        x = left + position * (width - draw.textlength(text))  # the end labels stay inside the bar's span
        draw.text((x, top + _BAR_PX + 2), text, fill="black")
    if span is None:
        draw.text((left + (width - draw.textlength(note)) / 4, top + _BAR_PX + 2), note, fill="black")  # clear of "0"
