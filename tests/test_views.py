"""Views and their exports: provenance, NPZ, static images with captions, and the Export row."""
from __future__ import annotations

import io
import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from ui import report, static_export, views
from ui.provenance import caption_lines, provenance


def _selection(model, key="embedded|pretrained|-|cpu"):
    return SimpleNamespace(model=model, model_key=key, image_label="Upload: <b>cat</b>.png", image_hash="abc123",
                           target=2, target_name=model.categories[2], device="cpu")


def test_provenance_names_model_weights_image_target_method_parameters_versions_and_date(embedded):
    prov = provenance(_selection(embedded), method="Grad-CAM", params={"layer": "features.3", "steps": 32,
                                                                        "sigma": 0.15}, targets=["a", "b"])
    assert prov["model"] == "embedded" and prov["weights"] == embedded.weights_source
    assert prov["image"] == "Upload: <b>cat</b>.png" and prov["image hash"] == "abc123"
    assert prov["target"] == f"{embedded.categories[2]} (2)"
    assert prov["method"] == "Grad-CAM"
    assert (prov["param: layer"], prov["param: steps"], prov["param: sigma"]) == ("features.3", "32", "0.15")
    assert prov["targets"] == "a, b"
    assert all(prov[f"version: {p}"] for p in ("xai-lab", "torch", "torchvision", "streamlit"))
    assert prov["date (UTC)"][:2] == "20"
    assert all(isinstance(v, str) for v in prov.values())
    lines = caption_lines(prov)
    assert any("embedded" in line for line in lines) and any("steps = 32" in line for line in lines)
    assert any("Grad-CAM" in line and embedded.categories[2] in line for line in lines)


def test_an_uploaded_checkpoint_is_named_in_the_weights(embedded):
    prov = provenance(_selection(embedded, key="embedded|0123456789abcdef|-|cpu"))
    assert "checkpoint 0123456789ab" in prov["weights"]


def test_npz_holds_the_arrays_and_the_provenance_as_json():
    maps = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    prov = {"model": "embedded", "target": "∂ (1)"}
    with np.load(io.BytesIO(views.npz_bytes({"maps": maps, "targets": np.array([1, 4])}, prov))) as archive:
        np.testing.assert_array_equal(archive["maps"], maps)
        np.testing.assert_array_equal(archive["targets"], [1, 4])
        assert json.loads(archive["provenance"].item()) == prov
    with pytest.raises(ValueError):
        views.npz_bytes({"provenance": maps}, prov)


def test_a_caption_is_added_under_the_figure_as_escaped_text_in_a_14px_font():
    fig = go.Figure(go.Scatter(y=[1, 2]), layout=dict(height=300))
    captioned = static_export.with_caption(fig, ["image: <b>x</b> & y", "steps = 32"])
    note = captioned.layout.annotations[-1]
    assert note.text == "image: &lt;b&gt;x&lt;/b&gt; &amp; y<br>steps = 32"
    assert note.font.size >= 14
    assert captioned.layout.height > 300 and fig.layout.height == 300  # the shown figure is untouched


def test_without_a_browser_static_export_says_what_to_install(monkeypatch):
    monkeypatch.setattr(static_export, "browser_path", lambda: None)
    with pytest.raises(static_export.StaticExportUnavailable, match="chromium.*camera button"):
        static_export.figure_image(go.Figure(), "png")
    assert "camera button" in static_export.unavailable_reason()


@pytest.mark.skipif(static_export.browser_path() is None, reason="no Chrome/Chromium for kaleido")
def test_a_browser_that_stops_answering_gives_a_message_instead_of_a_hung_download(monkeypatch):
    import time

    monkeypatch.setattr(static_export, "browser_path", lambda: "/usr/bin/chromium")
    monkeypatch.setattr(static_export, "RENDER_TIMEOUT_S", 0.3)
    monkeypatch.setattr(go.Figure, "to_image", lambda self, **kw: time.sleep(30))
    started = time.monotonic()
    with pytest.raises(static_export.StaticExportUnavailable, match="did not answer within"):
        static_export.figure_image(go.Figure(), "png")
    assert time.monotonic() - started < 5


def test_static_svg_carries_the_caption_and_readable_text():
    fig = go.Figure(go.Bar(x=["a"], y=[1]), layout=dict(title="∂ × ’", width=400, height=300))
    svg = static_export.figure_image(fig, "svg", caption=["model: embedded"], scale=1).decode()
    assert "model: embedded" in svg and "∂ × ’" in svg
    sizes = [float(s) for s in re.findall(r"font-size: ?([\d.]+)px", svg)]
    assert sizes and min(sizes) >= 14


def _view_script():
    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go

    from ui.views import show_figure, show_table

    prov = {"model": "embedded", "param: steps": "8"}
    show_figure(go.Figure(go.Scatter(y=[1, 2])), "Curve", prov, arrays={"curve": np.arange(2)})
    show_figure(go.Figure(go.Scatter(y=[3, 4])), "Curve", prov, key="second", png=b"\x89PNG")
    show_table(pd.DataFrame({"a": [1]}), "Scores", prov)


def test_every_view_gets_its_exports_and_adds_itself_to_the_report():
    at = AppTest.from_function(_view_script)
    at.run()
    assert not at.exception
    kaleido = ["PNG", "SVG", "SVG"] if static_export.browser_path() is not None else []  # PNG: the 1st view's
    assert sorted(b.proto.label for b in at.get("download_button")) == sorted(
        ["NPZ (arrays and provenance)", "PNG", "CSV", *kaleido])
    at.button(key="view.curve.report").click().run()
    at.button(key="view.scores.report").click().run()
    items = at.session_state["xai.report"].items
    assert [(i.title, i.kind) for i in items] == [("Curve", "figure"), ("Scores", "table")]
    assert items[0].provenance["param: steps"] == "8" and items[1].records == ({"a": 1},)
    at.button(key="view.curve.second.report").click().run()
    assert at.session_state["xai.report"].items[-1].png == b"\x89PNG"


def test_without_a_browser_the_export_row_warns_instead_of_failing(monkeypatch):
    monkeypatch.setattr(views, "unavailable_reason", lambda: "Static export needs Chrome")
    at = AppTest.from_function(_view_script)
    at.run()
    assert not at.exception
    assert [w.value for w in at.warning] == ["Static export needs Chrome"] * 2
    assert sorted(b.proto.label for b in at.get("download_button")) == sorted(
        ["NPZ (arrays and provenance)", "PNG", "CSV"])


def test_adding_to_a_full_report_says_so_and_keeps_the_report():
    at = AppTest.from_function(_view_script)
    full = [report.table_item(pd.DataFrame({"a": [i]}), f"t{i}", {}) for i in range(report.MAX_ITEMS)]
    at.session_state["xai.report"] = report.Report(items=full)
    at.run()
    at.button(key="view.scores.report").click().run()
    assert not at.exception
    assert len(at.session_state["xai.report"].items) == report.MAX_ITEMS
    assert any(f"at most {report.MAX_ITEMS} items" in t.value for t in at.toast)
