"""The UI's pure parts: plotly colour scales, figure builders, PNG export, ground-truth geometry, result store."""
from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from ui import colormaps, export, figures
from ui.shared_store import SharedStore
from ui.sidebar import ground_truth_for_input, parse_class_names
from xai_core import dataset, render
from xai_core.models import build_random


def test_plotly_colorscale_has_the_library_anchors():
    assert colormaps.plotly_colorscale("gray") == [[0.0, "rgb(0,0,0)"], [1.0, "rgb(255,255,255)"]]
    positions = [stop for stop, _ in colormaps.plotly_colorscale("viridis")]
    assert len(positions) == len(render.anchors("viridis")) and positions[-1] == 1.0


def test_heatmap_grid_has_one_image_per_filled_cell_and_one_shared_colour_bar():
    image = np.zeros((16, 16, 3), np.uint8)
    maps = [[np.random.rand(16, 16), None], [np.random.rand(4, 4), np.random.rand(16, 16)]]
    shared = figures.heatmap_grid(image, maps, ["t1", "t2"], ["m1", "m2"], shared_scale=True)
    assert sum(isinstance(t, go.Image) for t in shared.data) == 3
    assert sum(1 for t in shared.data if isinstance(t, go.Scatter) and t.marker.showscale) == 1
    shared_bar = next(t for t in shared.data if isinstance(t, go.Scatter)).marker
    assert shared_bar.colorbar.tickvals is None and shared_bar.cmax > 0.9  # the values of the shared range
    separate = figures.heatmap_grid([image, image], maps, ["t1", "t2"], ["m1", "m2"], shared_scale=False)
    bar = next(t for t in separate.data if isinstance(t, go.Scatter)).marker
    assert list(bar.colorbar.ticktext) == ["lo", "hi"]  # each map's own range: the ends of the text under it
    # Square pixels in every cell when the figure is stretched: each y-axis follows its own x-axis.
    assert [(shared.layout[f"yaxis{i}"].scaleanchor, shared.layout[f"yaxis{i}"].anchor) for i in ("", 2, 3, 4)] == \
        [("x", "x"), ("x2", "x2"), ("x3", "x3"), ("x4", "x4")]
    with pytest.raises(ValueError, match="Expected one image or 2 images"):
        figures.heatmap_grid([image] * 3, maps, ["t1", "t2"], ["m1", "m2"])


def test_overlay_figure_map_matches_the_image_size_and_range():
    image = np.zeros((20, 30, 3), np.uint8)
    fig = figures.overlay_figure(image, np.linspace(-2, 1, 25).reshape(5, 5), colormap=render.DIVERGING)
    heat = next(t for t in fig.data if isinstance(t, go.Heatmap))
    assert np.asarray(heat.z).shape == (20, 30)
    assert (heat.zmin, heat.zmax) == (-2.0, 2.0)


def test_prediction_bar_keeps_order_and_labels():
    preds = [{"index": 3, "name": "cat", "probability": 0.7}, {"index": 1, "name": "dog", "probability": 0.2}]
    bar = figures.prediction_bar(preds).data[0]
    assert list(bar.y) == ["cat (3)", "dog (1)"] and list(bar.x) == [0.7, 0.2]


def test_grid_png_cells_are_the_same_overlays_as_the_figure():
    image = (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3)
    heat = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    png = Image.open(io.BytesIO(export.grid_png(image, [[heat]], ["t"], ["m"], "jet", 0.5, min_cell_px=128)))
    assert png.format == "PNG"
    big = np.asarray(Image.fromarray(image).resize((128, 128), Image.NEAREST))
    expected = render.overlay(big, heat, "jet", 0.5, *render.grid_ranges([heat], "jet", True)[0])
    canvas = np.asarray(png.convert("RGB"))
    # Locate the cell: the only 128×128 block equal to the expected overlay.
    top, left = np.argwhere((canvas[:, :, 0] == expected[0, 0, 0]) & (canvas[:, :, 1] == expected[0, 0, 1]))[0]
    assert np.array_equal(canvas[top:top + 128, left:left + 128], expected)
    # Under the grid, a colour bar runs from the colormap's first colour to its last.
    bar_row = canvas[top + 128 + 4 + 2, left:]
    ends = render.colorize(np.array([[0.0, 1.0]]), "jet", 0.0, 1.0)[0]
    coloured = np.flatnonzero((bar_row != 255).any(axis=1))
    assert np.array_equal(bar_row[0], ends[0]) and np.array_equal(bar_row[coloured[-1]], ends[1])


def test_ground_truth_is_in_the_models_input_coordinates():
    sample = dataset.make_sample(3, 5)
    embedded = build_random("embedded", device="cpu")
    same = ground_truth_for_input(sample, embedded)  # 64×64 in, no resize: unchanged
    assert np.array_equal(same["object_mask"], sample.object_mask) and same["box"] == tuple(sample.box)
    resnet = build_random("resnet18", num_classes=8, device="cpu")  # 64 -> 256 -> centre crop 224
    truth = ground_truth_for_input(sample, resnet)
    assert truth["object_mask"].shape == (224, 224)
    ys, xs = np.nonzero(truth["object_mask"])
    x0, y0, x1, y1 = truth["box"]
    assert abs(xs.min() - x0) <= 1 and abs(ys.min() - y0) <= 1
    assert abs(xs.max() + 1 - x1) <= 1 and abs(ys.max() + 1 - y1) <= 1
    assert truth["object_mask"].sum() == pytest.approx(sample.object_mask.sum() * 16, rel=0.15)


def test_class_names_text():
    assert parse_class_names("cat, dog ,bird") == ["cat", "dog", "bird"]
    assert parse_class_names("tabby, cat\ndog\n\n") == ["tabby, cat", "dog"]  # lines win over commas
    assert parse_class_names("  ") is None


def test_result_store_evicts_least_recently_used_within_budget():
    store = SharedStore(max_entries=10, max_bytes=100)
    store.put("a", 1, 40)
    store.put("b", 2, 40)
    assert store.get("a") == 1  # "a" is now the most recent
    store.put("c", 3, 40)
    assert store.get("b") is None and store.get("a") == 1 and store.get("c") == 3


def test_column_scaling_shares_one_range_down_each_column_in_the_figure_and_the_png():
    # Column 0 spans 0..2 over its two rows, column 1 (another method, other units) 0..100; each cell has its own
    # pattern, so a cell's overlay cannot be mistaken for another's.
    ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    maps = [[ramp, 100 * ramp[::-1]], [2 * ramp.T, 50 * ramp.T[::-1]]]
    ranges = figures.cell_ranges(maps, 2, 2, "viridis", "column")
    assert ranges == [(0.0, 2.0), (0.0, 100.0), (0.0, 2.0), (0.0, 100.0)]
    image = np.full((8, 8, 3), 128, np.uint8)
    fig = figures.heatmap_grid(image, maps, ["t1", "t2"], ["m1", "m2"], "viridis", 1.0, shared_scale="column")
    cells = [np.asarray(Image.open(io.BytesIO(base64.b64decode(t.source.split(",", 1)[1]))).convert("RGB"))
             for t in fig.data if isinstance(t, go.Image)]
    # Row 1 holds half of each column's range, row 2 all of it: the brightest pixel of row 1 is the colormap's
    # middle colour, of row 2 its end; per-map or whole-grid scaling would colour them differently.
    middle, end = render.colorize(np.array([[0.5, 1.0]]), "viridis", 0.0, 1.0)[0]
    peaks = [np.unravel_index(np.argmax(m), m.shape) for m in (maps[0][0], maps[0][1], maps[1][0], maps[1][1])]
    assert [cell[peak].tolist() for cell, peak in zip(cells, peaks)] == \
        [middle.tolist(), end.tolist(), end.tolist(), middle.tolist()]
    assert [a.text for a in fig.layout.annotations][:2] == ["m1<br><sub>0 … 2</sub>", "m2<br><sub>0 … 100</sub>"]
    png = np.asarray(Image.open(io.BytesIO(export.grid_png(image, maps, ["t1", "t2"], ["m1", "m2"], "viridis", 1.0,
                                                           shared_scale="column", min_cell_px=8))).convert("RGB"))
    for heatmap, span in zip([maps[0][0], maps[0][1], maps[1][0], maps[1][1]], ranges):
        expected = render.overlay(image, heatmap, "viridis", 1.0, *span)
        assert any(np.array_equal(png[top:top + 8, left:left + 8], expected)
                   for top in range(png.shape[0] - 7) for left in range(png.shape[1] - 7))
    with pytest.raises(ValueError, match="shared_scale"):
        figures.cell_ranges(maps, 2, 2, "viridis", "row")


# ------------------------------------------------------------------ widgets from Param specs (ui.params)
def _param_script():
    """An app drawing ``param_widgets`` for a demo method with every kind of parameter, and a composing one."""
    import streamlit as st

    from ui.params import param_widgets
    from xai_core.methods.base import Method, Param
    from xai_core.models import build_random

    params = {
        "count": Param(int, 25, 1, 1000, widget="log_slider", help="noisy copies"),
        "sigma": Param(float, 0.15, 0.0, 1.0),
        "seed": Param(int, 0, 0, 2**31 - 1),
        "mode": Param(str, "mean", choices=("mean", "squared")),
        "rule": Param(str, "b", choices=("a", "b", "c"), widget="radio", label="Rule"),
        "flag": Param(bool, True),
        "name": Param(str, "x"),
        "layer": Param(str, "", widget="layer"),
    }
    demo = Method("demo", "Demo", "gradient", lambda *a, **k: None, params=params)
    plain = Method("plain", "Plain", "gradient", lambda *a, **k: None, params={"steps": Param(int, 8, 2, 64)})
    tunnel = Method("tunnel", "Tunnel", "gradient", lambda *a, **k: None, bases={"plain": plain, "demo": demo},
                    params={"base": Param(str, "plain", choices=("plain", "demo")), "samples": Param(int, 4, 1, 9)})
    model = build_random("embedded", device="cpu")
    st.session_state["values"] = param_widgets(demo, model, key_prefix="t") if st.session_state.get("show", True) \
        else None
    st.session_state["tunnel"] = param_widgets(tunnel, model, key_prefix="t", container=st.sidebar)
    st.session_state["default_layer"] = model.default_layer


def _param_app():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_param_script, default_timeout=60)
    at.run()
    assert not at.exception and not at.warning, [e.message for e in at.exception] + [w.value for w in at.warning]
    return at


def _by_key(at, key):
    return next(w for w in at.main if getattr(w, "key", None) == key)


def test_param_widgets_draw_the_preferred_widget_of_each_kind_with_the_defaults():
    at = _param_app()
    kinds = {key: type(_by_key(at, f"t.demo.{key}")).__name__ for key in at.session_state["values"]}
    assert kinds == {"count": "SelectSlider", "sigma": "Slider", "seed": "NumberInput", "mode": "Selectbox",
                     "rule": "Radio", "flag": "Checkbox", "name": "TextInput", "layer": "Selectbox"}
    assert at.session_state["values"] == {"count": 25, "sigma": 0.15, "seed": 0, "mode": "mean", "rule": "b",
                                          "flag": True, "name": "x", "layer": at.session_state["default_layer"]}
    layer = _by_key(at, "t.demo.layer")
    assert list(layer.options) == build_random("embedded", device="cpu").conv_layers()
    assert _by_key(at, "t.demo.rule").label == "Rule" and _by_key(at, "t.demo.count").help == "noisy copies"
    assert _by_key(at, "t.demo.sigma").step == 0.01  # a power of ten giving 20 to 200 steps over [0, 1]


def test_a_log_slider_moves_in_log_steps_and_shows_the_real_value():
    from ui.params import log_options
    from xai_core.methods.base import Param

    param = Param(int, 25, 1, 1000, widget="log_slider")
    options = log_options(param)
    assert options[0] == 1 and options[-1] == 1000 and 25 in options and options == sorted(set(options))
    ratios = np.diff(np.log10(options[-10:]))  # evenly spaced in log10 where rounding to ints does not bite
    assert np.allclose(ratios, 3 / 60, atol=0.01)
    at = _param_app()
    slider = _by_key(at, "t.demo.count")
    assert "1,000" in slider.options and "25" in slider.options  # the labels are the values, not their log10


def test_param_values_survive_reruns_and_the_widgets_not_being_drawn():
    at = _param_app()
    _by_key(at, "t.demo.count").set_value(100)
    _by_key(at, "t.demo.mode").set_value("squared")
    at.run()
    assert at.session_state["values"]["count"] == 100 and at.session_state["values"]["mode"] == "squared"
    at.session_state["show"] = False  # the method is deselected: streamlit forgets its widgets' state
    at.run()
    at.session_state["show"] = True
    at.run()
    assert at.session_state["values"]["count"] == 100 and at.session_state["values"]["mode"] == "squared"


def test_a_composing_method_draws_its_base_methods_widgets_as_base_params():
    at = _param_app()
    assert at.session_state["tunnel"] == {"base": "plain", "samples": 4, "base.steps": 8}
    assert at.sidebar.slider(key="t.tunnel.base.plain.steps").value == 8  # drawn in the given container
    at.sidebar.selectbox(key="t.tunnel.base").set_value("demo")
    at.run()
    tunnel = at.session_state["tunnel"]
    assert {k for k in tunnel if k.startswith("base.")} == {f"base.{k}" for k in at.session_state["values"]}


def test_param_widgets_of_every_registered_method_give_params_its_parser_accepts():
    from streamlit.testing.v1 import AppTest

    def script():
        import streamlit as st

        from ui.params import param_widgets
        from xai_core.methods import METHODS
        from xai_core.models import build_random

        model = build_random("embedded", device="cpu")
        st.session_state["parsed"] = {name: (spec.parse_params(param_widgets(spec, model, key_prefix="all")),
                                             spec.parse_params({}))
                                      for name, spec in METHODS.items()}
        st.session_state["default_layer"] = model.default_layer

    at = AppTest.from_function(script, default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    for name, (drawn, defaults) in at.session_state["parsed"].items():
        if "layer" in defaults:  # the widget shows the layer ``explain`` would pick
            defaults["layer"] = at.session_state["default_layer"]
        assert drawn == defaults, name
