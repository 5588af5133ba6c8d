"""Maps as pictures: colour maps, overlays over the image, PNG bytes (numpy and PIL only).

The app's figures and PNG downloads colour maps with these functions, so a notebook that
calls them gets the same pictures::

    from xai_core import render
    picture = render.overlay(model.to_display(x), explanation.map, "viridis", alpha=0.5)
    open("map.png", "wb").write(render.png_bytes(picture))

Each colour map is a short list of RGB anchors spread evenly over [0, 1]; values in between
are interpolated linearly. A value range is the map's min and max unless given; for the
diverging map (``DIVERGING``) it is symmetric around zero, so zero is its middle colour.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image

_ANCHORS: dict[str, list[tuple[int, int, int]]] = {
    "viridis": [(68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
                (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37)],
    "inferno": [(0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
                (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164)],
    "jet": [(0, 0, 128), (0, 0, 255), (0, 128, 255), (0, 255, 255), (128, 255, 128),
            (255, 255, 0), (255, 128, 0), (255, 0, 0), (128, 0, 0)],
    # Diverging blue-white-red for signed attributions: zero is white when vmin = -vmax.
    "bwr": [(5, 48, 97), (67, 147, 195), (247, 247, 247), (214, 96, 77), (103, 0, 31)],
    "gray": [(0, 0, 0), (255, 255, 255)],
}

COLORMAPS: tuple[str, ...] = tuple(_ANCHORS)
"""Names every function here accepts."""

DIVERGING = "bwr"
"""The colour map for signed maps; its ranges are symmetric around zero by default."""


def anchors(cmap: str) -> np.ndarray:
    """The colour map's RGB anchors, K×3 float32 (0..255), evenly spread over [0, 1]."""
    try:
        return np.asarray(_ANCHORS[cmap], dtype=np.float32)
    except KeyError:
        raise ValueError(f"Unknown colormap '{cmap}'; available: {', '.join(COLORMAPS)}.") from None


def value_range(values: np.ndarray, vmin: float | None = None, vmax: float | None = None,
                symmetric: bool = False) -> tuple[float, float]:
    """The colour range: given bounds, else the values' min and max, or ±max|v| when ``symmetric``
    (NaN ignored; a flat map gets a unit range, so it takes the first colour)."""
    values = np.asarray(values, dtype=np.float32)
    bound = float(np.nanmax(np.abs(values))) if symmetric else 0.0
    lo = (-bound if symmetric else float(np.nanmin(values))) if vmin is None else float(vmin)
    hi = (bound if symmetric else float(np.nanmax(values))) if vmax is None else float(vmax)
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def grid_ranges(maps: Sequence[np.ndarray | None], cmap: str, shared: bool) -> list[tuple[float, float] | None]:
    """The colour range of each map in a set (``None`` entries stay ``None``).

    ``shared``: one range over all maps, so colours compare across them; otherwise each map's
    own. The diverging colour map gets ranges symmetric around zero.
    """
    present = [np.ravel(m) for m in maps if m is not None]
    if not present:
        return [None] * len(maps)
    symmetric = cmap == DIVERGING
    common = value_range(np.concatenate(present), symmetric=symmetric) if shared else None
    return [None if m is None else common or value_range(m, symmetric=symmetric) for m in maps]


def relative_ticks(cmap: str) -> dict[float, str]:
    """Colour-bar ticks for maps scaled each to its own range, written "lo … hi" under each map:
    position in [0, 1] -> which end of that text it is."""
    if cmap == DIVERGING:
        return {0.0: "lo", 0.5: "0", 1.0: "hi"}
    return {0.0: "lo", 1.0: "hi"}


def normalize(values: np.ndarray, vmin: float | None = None, vmax: float | None = None,
              symmetric: bool = False) -> np.ndarray:
    """Values mapped to [0, 1] over ``value_range`` (clipped; NaN -> 0)."""
    lo, hi = value_range(values, vmin, vmax, symmetric)
    unit = (np.asarray(values, dtype=np.float32) - lo) / (hi - lo)
    return np.nan_to_num(np.clip(unit, 0.0, 1.0))


def colorize(heatmap: np.ndarray, cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
             symmetric: bool | None = None) -> np.ndarray:
    """H×W values -> H×W×3 uint8 colours.

    The range is ``vmin``..``vmax`` where given, else the map's own (``symmetric``: ±max|v|;
    ``None`` means symmetric for the diverging colour map only).
    """
    table = anchors(cmap)
    symmetric = cmap == DIVERGING if symmetric is None else symmetric
    position = normalize(heatmap, vmin, vmax, symmetric) * (len(table) - 1)
    low = np.floor(position).astype(np.int64).clip(0, len(table) - 2)
    fraction = (position - low)[..., None]
    rgb = table[low] * (1 - fraction) + table[low + 1] * fraction
    return rgb.round().astype(np.uint8)


def resize(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float map (maps of coarse layers are shown over the image)."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape == (height, width):
        return heatmap
    return np.asarray(Image.fromarray(heatmap).resize((width, height), Image.BILINEAR))


def greyscale(image: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 -> its luminance (ITU-R 601) on three channels.

    Maps are drawn over the grey image: the image's own colours would mix with the colour map's
    (a blue object under viridis reads as low values, a brown background under bwr as positive).
    """
    luminance = np.asarray(image, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(luminance.round().clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)


def overlay(image: np.ndarray, heatmap: np.ndarray, cmap: str = "viridis", alpha: float = 0.5,
            vmin: float | None = None, vmax: float | None = None, symmetric: bool | None = None,
            grey: bool = True) -> np.ndarray:
    """The coloured map blended over an H×W×3 uint8 image: H×W×3 uint8.

    The map is resized to the image; ``alpha`` is the map's weight (0: the image, 1: the map
    alone); the range is that of ``colorize``. ``grey``: blend over the image's greyscale (see
    ``greyscale``), as the app does; ``False`` keeps its colours.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}.")
    h, w = image.shape[:2]
    colours = colorize(resize(heatmap, h, w), cmap, vmin, vmax, symmetric).astype(np.float32)
    base = greyscale(image) if grey else np.asarray(image, dtype=np.uint8)
    blended = base.astype(np.float32) * (1 - alpha) + colours * alpha
    return blended.round().clip(0, 255).astype(np.uint8)


OUTLINE_COLOURS: tuple[tuple[int, int, int], ...] = ((255, 0, 255), (0, 255, 0), (0, 255, 255), (255, 128, 0),
                                                   (255, 255, 0))
"""Outline colours in order of the outlines' names: saturated, far from one another and from the
diverging map's blue, white-grey and red."""


def outline_colours(names: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """The colour each named outline is drawn in (``draw_outlines``), for the legends that name them."""
    return {name: OUTLINE_COLOURS[i % len(OUTLINE_COLOURS)] for i, name in enumerate(names)}


def outline_pixels(shape: tuple[int, int], outline: np.ndarray | Sequence[float], size: tuple[int, int] | None = None,
                   thickness: int = 1) -> np.ndarray:
    """The H×W boolean pixels of an outline ``thickness`` pixels wide, inside its region: an H×W
    boolean mask, or a box ``(x0, y0, x1, y1)`` (pixels x0 ≤ x < x1, y0 ≤ y < y1, as masks' extents).

    A mask is resized to ``shape`` with nearest neighbour (its own shape gives its coordinates); a box's
    coordinates refer to an image of ``size`` (height, width; default ``shape``) and are scaled to ``shape``.
    """
    h, w = shape
    if isinstance(outline, np.ndarray) and outline.ndim == 2:
        region = np.asarray(Image.fromarray(outline.astype(bool)).resize((w, h), Image.NEAREST), dtype=bool)
    else:
        sy, sx = (h / size[0], w / size[1]) if size else (1.0, 1.0)
        x0, y0, x1, y1 = (float(v) for v in outline)
        region = np.zeros((h, w), bool)
        region[max(0, round(y0 * sy)):min(h, round(y1 * sy)), max(0, round(x0 * sx)):min(w, round(x1 * sx))] = True
    inner = region
    for _ in range(thickness):  # erode: a pixel stays inside when its four neighbours are in the region
        padded = np.pad(inner, 1)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return region & ~inner


def draw_outlines(rgb: np.ndarray, outlines: dict[str, np.ndarray | Sequence[float]],
                  size: tuple[int, int] | None = None, thickness: int | None = None) -> np.ndarray:
    """A copy of the H×W×3 uint8 picture with each named outline (mask or box, see ``outline_pixels``)
    drawn in its ``outline_colours`` colour, later names over earlier ones. ``thickness`` defaults to
    one pixel per 112 of the picture's shorter side (2 on a 224×224 overlay)."""
    out = np.array(rgb, dtype=np.uint8, copy=True)
    thickness = thickness or max(1, round(min(out.shape[:2]) / 112))
    for name, colour in outline_colours(list(outlines)).items():
        out[outline_pixels(out.shape[:2], outlines[name], size, thickness)] = colour
    return out


def png_bytes(image: np.ndarray) -> bytes:
    """An H×W (grey), H×W×3 (RGB) or H×W×4 (RGBA) uint8 array as PNG file bytes."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"png_bytes takes a uint8 array; got {image.dtype} (use colorize or overlay first).")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def tile(rows: Sequence[Sequence[np.ndarray]], gap: int = 4) -> np.ndarray:
    """Pictures of one size (H×W×3 uint8) in a grid, ``rows[r][c]``, ``gap`` white pixels apart:
    (R·H + (R−1)·gap) × (C·W + (C−1)·gap) × 3 uint8, C the longest row's length."""
    h, w = np.asarray(rows[0][0]).shape[:2]
    n_cols = max(len(row) for row in rows)
    canvas = np.full((len(rows) * (h + gap) - gap, n_cols * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            picture = np.asarray(picture)
            if picture.shape != (h, w, 3) or picture.dtype != np.uint8:
                raise ValueError(f"tile takes {h}×{w}×3 uint8 pictures; got {picture.shape} {picture.dtype}.")
            canvas[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = picture
    return canvas
