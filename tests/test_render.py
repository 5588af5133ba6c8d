"""xai_core.render: colour maps, overlays and PNG bytes, against answers known in closed form."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from xai_core import render


@pytest.mark.parametrize("cmap", render.COLORMAPS)
def test_a_map_at_its_minimum_but_one_pixel_gets_the_first_and_last_colours(cmap):
    heatmap = np.full((5, 7), -2.0, np.float32)
    heatmap[3, 4] = 5.0
    colours = render.colorize(heatmap, cmap, symmetric=False)
    first, last = render.anchors(cmap)[[0, -1]].astype(np.uint8)
    assert colours.shape == (5, 7, 3) and colours.dtype == np.uint8
    assert colours[3, 4].tolist() == last.tolist()
    assert (colours[np.arange(5) != 3].reshape(-1, 3) == first).all() and colours[3, 0].tolist() == first.tolist()


def test_values_between_anchors_are_interpolated_and_explicit_ranges_clip():
    gray = render.colorize(np.array([[0.0, 5.0, 10.0]]), "gray")
    assert gray[0, :, 0].tolist() == [0, 128, 255]  # 127.5, rounded half to even
    assert render.colorize(np.array([[10.0]]), "gray", vmin=0, vmax=20)[0, 0].tolist() == [128, 128, 128]
    assert render.colorize(np.array([[-5.0, 50.0]]), "gray", vmin=0, vmax=20)[0, :, 0].tolist() == [0, 255]
    assert render.colorize(np.full((2, 2), 3.0), "gray")[0, 0].tolist() == [0, 0, 0]  # flat: the first colour
    with pytest.raises(ValueError, match="Unknown colormap"):
        render.colorize(np.zeros((2, 2)), "rainbow-ish")


def test_a_diverging_map_puts_zero_at_the_centre_colour():
    centre = render.anchors(render.DIVERGING)[len(render.anchors(render.DIVERGING)) // 2].tolist()
    signed = np.array([[-1.0, 0.0, 3.0]])  # asymmetric: min-max scaling would not put 0 at the centre
    colours = render.colorize(signed, render.DIVERGING)
    assert colours[0, 1].tolist() == centre
    assert colours[0, 2].tolist() == render.anchors(render.DIVERGING)[-1].tolist()  # +max|v|
    assert render.colorize(signed, render.DIVERGING, symmetric=False)[0, 1].tolist() != centre
    assert render.grid_ranges([signed], render.DIVERGING, shared=False) == [(-3.0, 3.0)]


def test_grid_ranges_are_shared_or_per_map_and_skip_missing_maps():
    a, b = np.array([[0.0, 1.0]]), np.array([[2.0, 4.0]])
    assert render.grid_ranges([a, None, b], "viridis", shared=True) == [(0.0, 4.0), None, (0.0, 4.0)]
    assert render.grid_ranges([a, b], "viridis", shared=False) == [(0.0, 1.0), (2.0, 4.0)]
    assert render.grid_ranges([None], "viridis", shared=True) == [None]


def test_alpha_zero_returns_the_image_and_alpha_one_the_coloured_map():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    heatmap = rng.random((6, 8)).astype(np.float32)
    assert np.array_equal(render.overlay(image, heatmap, "jet", alpha=0.0, grey=False), image)
    assert np.array_equal(render.overlay(image, heatmap, "jet", alpha=0.0), render.greyscale(image))
    assert np.array_equal(render.overlay(image, heatmap, "jet", alpha=1.0), render.colorize(heatmap, "jet"))
    with pytest.raises(ValueError, match="alpha"):
        render.overlay(image, heatmap, alpha=1.5)


def test_overlay_resizes_a_coarse_map_to_the_image_and_blends_over_its_grey_version():
    image = np.zeros((32, 32, 3), np.uint8)
    coarse = np.zeros((4, 4), np.float32)
    coarse[:, 2:] = 1.0
    out = render.overlay(image, coarse, "gray", alpha=0.5)
    assert out.shape == (32, 32, 3)
    assert out[:, :8].max() == 0 and out[:, -8:].min() == 128  # left half black, right half half-white
    blue = np.zeros((4, 4, 3), np.uint8)
    blue[..., 2] = 200  # over the grey image, the image's hue cannot shift the colour map's
    assert render.greyscale(blue)[0, 0].tolist() == [23, 23, 23]  # 0.114 · 200
    assert np.array_equal(render.overlay(blue, np.zeros((4, 4)), "viridis", 0.5),
                          render.overlay(render.greyscale(blue), np.zeros((4, 4)), "viridis", 0.5, grey=False))


@pytest.mark.parametrize("shape", [(5, 4), (5, 4, 3), (5, 4, 4)])
def test_png_bytes_decode_to_the_same_array(shape):
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    png = render.png_bytes(array)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), array)
    with pytest.raises(ValueError, match="uint8"):
        render.png_bytes(array.astype(np.float32))


def test_a_box_outline_is_its_edge_pixels_in_the_first_colour_and_scales_with_the_picture():
    picture = np.zeros((10, 12, 3), np.uint8)
    out = render.draw_outlines(picture, {"box": (2, 1, 7, 5)}, thickness=1)
    drawn = (out == render.OUTLINE_COLOURS[0]).all(axis=-1)
    expected = np.zeros((10, 12), bool)
    expected[1:5, 2:7] = True
    expected[2:4, 3:6] = False  # pixels x0 ≤ x < x1, y0 ≤ y < y1, edges only
    assert np.array_equal(drawn, expected) and not picture.any()  # drawn on a copy
    doubled = render.outline_pixels((20, 24), (2, 1, 7, 5), size=(10, 12), thickness=2)
    assert doubled[2:4, 4:14].all() and doubled[8:10, 4:14].all() and doubled[2:10, 4:6].all()  # 2 px edges, ×2
    assert not doubled[4:8, 6:12].any() and doubled.sum() == 8 * 10 - 4 * 6


def test_a_mask_outline_follows_its_boundary_at_any_resolution_in_its_own_colour():
    mask = np.zeros((8, 8), bool)
    mask[2:6, 3:7] = True
    ring = mask.copy()
    ring[3:5, 4:6] = False
    assert np.array_equal(render.outline_pixels((8, 8), mask), ring)
    big = render.outline_pixels((32, 32), mask, thickness=1)  # nearest-neighbour ×4
    assert big[8, 12:28].all() and big[23, 12:28].all() and not big[9:23, 13:27].any() and not big[:8].any()
    colours = render.outline_colours(["a", "b"])
    out = render.draw_outlines(np.zeros((8, 8, 3), np.uint8), {"a": (0, 0, 8, 8), "b": mask}, thickness=1)
    assert out[0, 0].tolist() == list(colours["a"]) and out[2, 3].tolist() == list(colours["b"])
    assert colours["a"] != colours["b"] and out[4, 4].tolist() == [0, 0, 0]
