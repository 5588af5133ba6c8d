"""Colormaps in one place, numpy only, so the plotly figures and the PNG exports agree.

Each colormap is a short list of RGB anchors spread evenly over [0, 1]; values in between
are interpolated linearly. ``plotly_colorscale`` gives plotly the same anchors.
"""
from __future__ import annotations

import numpy as np

_ANCHORS: dict[str, list[tuple[int, int, int]]] = {
    "viridis": [(68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
                (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37)],
    "inferno": [(0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
                (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164)],
    "jet": [(0, 0, 128), (0, 0, 255), (0, 128, 255), (0, 255, 255), (128, 255, 128),
            (255, 255, 0), (255, 128, 0), (255, 0, 0), (128, 0, 0)],
    # Diverging blue-white-red for signed attributions: zero is white when zmin = -zmax.
    "bwr": [(5, 48, 97), (67, 147, 195), (247, 247, 247), (214, 96, 77), (103, 0, 31)],
    "gray": [(0, 0, 0), (255, 255, 255)],
}

COLORMAPS: tuple[str, ...] = tuple(_ANCHORS)
"""Names accepted by every function here and by ``ui.figures``."""

DIVERGING = "bwr"


def _anchors(name: str) -> np.ndarray:
    try:
        return np.asarray(_ANCHORS[name], dtype=np.float32)
    except KeyError:
        raise ValueError(f"Unknown colormap '{name}'; available: {', '.join(COLORMAPS)}.") from None


def value_range(heatmap: np.ndarray, zmin: float | None = None, zmax: float | None = None) -> tuple[float, float]:
    """The colour range: given bounds, else the map's min/max (a flat map gets a unit range)."""
    finite = np.asarray(heatmap, dtype=np.float32)
    lo = float(np.nanmin(finite)) if zmin is None else float(zmin)
    hi = float(np.nanmax(finite)) if zmax is None else float(zmax)
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def grid_ranges(maps: list, colormap: str, shared: bool) -> list[tuple[float, float] | None]:
    """Colour range of each map in a grid (``None`` entries stay ``None``).

    ``shared``: one range over all maps, so colours compare across methods and targets.
    A diverging colormap gets a range symmetric around zero, so zero is its middle colour.
    """
    def one(values: list[np.ndarray]) -> tuple[float, float]:
        if colormap == DIVERGING:
            bound = max(float(np.nanmax(np.abs(v))) for v in values) or 1.0
            return -bound, bound
        return value_range(np.concatenate([np.ravel(v) for v in values]))

    present = [m for m in maps if m is not None]
    if not present:
        return [None] * len(maps)
    common = one(present) if shared else None
    return [None if m is None else (common or one([m])) for m in maps]


def relative_ticks(colormap: str) -> dict[float, str]:
    """Colour-bar ticks for maps scaled each to its own range: position in [0, 1] -> what it means."""
    if colormap == DIVERGING:
        return {0.0: "-max|v|", 0.5: "0", 1.0: "+max|v|"}
    return {0.0: "min", 1.0: "max"}


def normalize(heatmap: np.ndarray, zmin: float | None = None, zmax: float | None = None) -> np.ndarray:
    """Map values to [0, 1] with the range of ``value_range`` (clipped, NaN -> 0)."""
    lo, hi = value_range(heatmap, zmin, zmax)
    unit = (np.asarray(heatmap, dtype=np.float32) - lo) / (hi - lo)
    return np.nan_to_num(np.clip(unit, 0.0, 1.0))


def apply(heatmap: np.ndarray, colormap: str = "viridis", zmin: float | None = None,
          zmax: float | None = None) -> np.ndarray:
    """H×W values -> H×W×3 uint8 colours."""
    anchors = _anchors(colormap)
    pos = normalize(heatmap, zmin, zmax) * (len(anchors) - 1)
    low = np.floor(pos).astype(np.int64).clip(0, len(anchors) - 2)
    frac = (pos - low)[..., None]
    rgb = anchors[low] * (1 - frac) + anchors[low + 1] * frac
    return rgb.round().astype(np.uint8)


def resize(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float map (maps from coarse layers are shown over the image)."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape == (height, width):
        return heatmap
    from PIL import Image

    return np.asarray(Image.fromarray(heatmap).resize((width, height), Image.BILINEAR))


def greyscale(image: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 -> its luminance (ITU-R 601) on three channels.

    Maps are drawn over the grey image: the image's own colours would mix with the colormap's
    (a blue object under viridis reads as low values, a brown background under bwr as positive).
    """
    luminance = np.asarray(image, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(luminance.round().clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)


def overlay(image: np.ndarray, heatmap: np.ndarray, colormap: str = "viridis", opacity: float = 0.5,
            zmin: float | None = None, zmax: float | None = None) -> np.ndarray:
    """Blend the coloured map over the grey version of an H×W×3 uint8 image (map resized to the image)."""
    h, w = image.shape[:2]
    colours = apply(resize(heatmap, h, w), colormap, zmin, zmax).astype(np.float32)
    blended = greyscale(image).astype(np.float32) * (1 - opacity) + colours * opacity
    return blended.round().clip(0, 255).astype(np.uint8)


def plotly_colorscale(colormap: str) -> list[list]:
    """The same anchors as a plotly ``colorscale``."""
    anchors = _anchors(colormap)
    n = len(anchors) - 1
    return [[i / n, f"rgb({int(r)},{int(g)},{int(b)})"] for i, (r, g, b) in enumerate(anchors)]
