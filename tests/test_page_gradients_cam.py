"""The Gradients and CAM page: every registered method of its families, a grid of targets × methods
and its downloads, with parameter widgets drawn from each method's Param specs."""
import html
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui.cache import _result_store
from ui.figures import MIN_CELL_PX
from ui.views import GRID_MAX_COLS
from xai_core import dataset
from xai_core.methods import METHODS

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "1_Gradients_and_CAM.py")
FAMILIES = ("gradient", "cam", "path", "attention")  # the page's families; its methods are read from the registry
RUN_ON_DEFAULT = ("gradient", "cam", "path")  # attention methods refuse the default CNN (tests/test_transformers.py)
KEY = "gradients_cam"


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.warning and not at.error, [w.value for w in at.warning] + [e.value for e in at.error]
    return at


@pytest.fixture
def page() -> AppTest:
    return _run(AppTest.from_file(PAGE, default_timeout=240))


def _method_selects(at: AppTest) -> dict:
    return {s.key.rsplit(".", 1)[1]: s for s in at.multiselect if s.key and s.key.startswith(f"{KEY}.methods.")}


def _widget(at: AppTest, key: str):
    return next(w for w in at.main if getattr(w, "key", None) == key)


def _layouts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec)["layout"] for chart in at.get("plotly_chart")]


def _titles(at: AppTest) -> list[str]:
    """Every grid title, whole: the full name a cut title carries on hover, or its wrapped lines joined."""
    return [html.unescape(a.get("hovertext") or a["text"].replace("<br>", " "))
            for layout in _layouts(at) for a in layout["annotations"]]


def test_every_registered_method_of_the_pages_families_is_offered_and_runs(page):
    selects = _method_selects(page)
    assert set(selects) == set(FAMILIES)
    for family, select in selects.items():
        expected = [name for name, spec in METHODS.items() if spec.family == family]
        assert select.options == [METHODS[name].label for name in expected]
        select.set_value(expected if family in RUN_ON_DEFAULT else [])
    _run(page)
    offered = [name for name, spec in METHODS.items() if spec.family in RUN_ON_DEFAULT]
    # The grid, cut into figures of GRID_MAX_COLS methods so that no map shrinks under MIN_CELL_PX;
    # each part has its PNG (the library's, of the whole grid) and NPZ under "Export".
    n_parts = -(-len(offered) // GRID_MAX_COLS)
    assert len(page.get("plotly_chart")) == n_parts
    for part, layout in enumerate(_layouts(page)):
        columns = min(GRID_MAX_COLS, len(offered) - part * GRID_MAX_COLS)
        assert layout["width"] - layout["margin"]["l"] - layout["margin"]["r"] >= columns * MIN_CELL_PX
    assert {b.key for b in page.get("download_button")} >= {"view.gradients_and_cam.png", "view.gradients_and_cam.npz"}
    titles = _titles(page)
    for name in offered:  # one column per method, titled by its label (class-agnostic ones say so)
        spec = METHODS[name]
        assert spec.label + (" (class-agnostic)" if spec.class_agnostic else "") in titles
    # Every parameter of every method has its widget, keyed by method and parameter.
    keys = {w.key for w in page.main if getattr(w, "key", None)}
    assert {f"{KEY}.{name}.{p}" for name in offered for p in METHODS[name].params} <= keys


def test_grid_of_two_targets_by_three_methods_with_the_models_default_layer(page):
    targets = next(s for s in page.multiselect if s.label.startswith("Target classes"))
    assert len(targets.value) == 1  # the predicted class by default
    selects = _method_selects(page)
    selects["gradient"].set_value(["saliency"])
    selects["cam"].set_value(["cam", "faster_scorecam"])
    selects["path"].set_value([])
    predicted = dataset.CLASSES.index(targets.value[0])  # classes are chosen by name
    targets.set_value([targets.value[0], dataset.CLASSES[(predicted + 1) % 8]])
    _run(page)
    assert page.selectbox(key=f"{KEY}.cam.layer").value == "features.block4"  # the embedded model's CAM layer
    assert page.selectbox(key=f"{KEY}.faster_scorecam.layer").value == "features.block4"
    next(r for r in page.radio if r.label == "Colour scaling").set_value("shared per method")
    _run(page)
    assert sum("<sub>" in t and " … " in t for t in _titles(page)) == 3  # each method's range under its title


def test_changing_one_methods_parameter_recomputes_only_its_column(page):
    selects = _method_selects(page)
    selects["gradient"].set_value(["saliency", "smoothgrad"])
    selects["cam"].set_value(["gradcam", "faster_scorecam"])
    selects["path"].set_value([])
    _run(page)
    store = _result_store()
    before = set(store.keys())
    smallest = METHODS["faster_scorecam"].params["max_n"].low  # a value every kind of widget offers
    _widget(page, f"{KEY}.faster_scorecam.max_n").set_value(smallest)
    _run(page)
    added = set(store.keys()) - before
    assert [key[3] for key in added] == ["faster_scorecam"]  # key: model, image, input, method, targets, params
    assert dict(next(iter(added))[5]) == {"layer": "features.block4", "weighting": "softmax", "max_n": smallest}
    assert _widget(page, f"{KEY}.faster_scorecam.max_n").value == smallest  # the value survives the rerun


def test_the_noise_tunnel_draws_its_base_methods_widgets(page):
    selects = _method_selects(page)
    selects["gradient"].set_value(["smoothgrad"])
    selects["cam"].set_value([])
    _run(page)
    base = page.selectbox(key=f"{KEY}.smoothgrad.base")
    composable = [name for name, spec in METHODS.items() if spec.composable and spec.params]
    if not composable:
        pytest.skip("no composable method with parameters is registered")
    base.set_value(composable[0])
    _run(page)
    keys = {w.key for w in page.main if getattr(w, "key", None)}
    assert {f"{KEY}.smoothgrad.base.{composable[0]}.{p}" for p in METHODS[composable[0]].params} <= keys
