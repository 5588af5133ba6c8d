"""The Evaluate page: methods × metrics over a few images, run a batch at a time through the result
store, with its table, figures, gallery and downloads; and its pure helpers (time left, extremes,
figures)."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

import xai_core.evaluation
from ui.evaluation_figures import per_image_frame, score_distributions, summary_frame
from ui.evaluation_session import (EvaluationProgress, EvaluationRequest, duration, evaluate, extremes, named_params,
                                   stored, time_left)
from xai_core import dataset
from xai_core.evaluation import run_evaluation
from xai_core.methods import METHODS
from xai_core.metrics import METRICS

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "5_Evaluate.py")
KEY = "evaluate"
TIMEOUT = 240
N, BATCH = 6, 4                        # two batches (4 + 2): the page merges them
CHOSEN_METHODS = ["saliency", "gradcam"]
CHOSEN_METRICS = ["pointing_game", "energy_pointing_game", "deletion"]
DELETION_STEPS = 4


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _widget(at: AppTest, key: str):
    return next(w for w in at.main if getattr(w, "key", None) == key)


def _configure(at: AppTest, n: int = N) -> AppTest:
    _widget(at, f"{KEY}.n").set_value(n)
    _widget(at, f"{KEY}.batch_size").set_value(BATCH)
    _widget(at, f"{KEY}.methods").set_value(CHOSEN_METHODS)
    _widget(at, f"{KEY}.metrics").set_value(CHOSEN_METRICS)
    _run(at)
    _widget(at, f"{KEY}.metric.deletion.steps").set_value(DELETION_STEPS)  # drawn once deletion is chosen
    return _run(at)


@pytest.fixture(scope="module")
def evaluated() -> AppTest:
    """The page after Run on the small settings (module-scoped: the tests below only read it or rerun)."""
    at = _configure(_run(AppTest.from_file(PAGE, default_timeout=TIMEOUT)))
    _widget(at, f"{KEY}.run").click()
    return _run(at)


def _labels() -> dict[str, str]:
    return {n: METHODS[n].label for n in CHOSEN_METHODS} | {n: METRICS[n].label for n in CHOSEN_METRICS}


def test_the_table_has_one_row_per_method_and_metric_equal_to_one_run_of_the_runner(evaluated, embedded):
    assert not evaluated.error and not evaluated.warning, [e.value for e in evaluated.error]
    table = evaluated.dataframe[0].value
    labels = _labels()
    assert sorted(zip(table["Method"], table["Metric"])) == sorted(
        (labels[m], labels[k]) for m in CHOSEN_METHODS for k in CHOSEN_METRICS)
    assert np.isfinite(table["Mean"]).all() and (table["n"] == N).all()
    assert ((table["95% CI low"] <= table["Mean"]) & (table["Mean"] <= table["95% CI high"])).all()
    # Batch by batch through the result store, merged: the same numbers as one runner call, up to
    # float rounding (the page's shared engine may have learned other batch sizes from earlier runs,
    # and a deletion curve is a sum of many probabilities).
    reference = run_evaluation(embedded, "embedded:0", {m: {} for m in CHOSEN_METHODS},
                               {"pointing_game": {}, "energy_pointing_game": {},
                                "deletion": {"steps": DELETION_STEPS}}, n=N, batch_size=BATCH)
    expected = summary_frame(reference.summary, labels)
    for column in ("Mean", "95% CI low", "95% CI high"):
        np.testing.assert_allclose(table[column].to_numpy(float), expected[column].to_numpy(float), rtol=1e-4)
    directions = dict(zip(table["Metric"], table["Better"]))
    assert directions[labels["deletion"]] == "lower ↓" and directions[labels["pointing_game"]] == "higher ↑"


def test_distributions_curves_gallery_and_downloads_are_drawn(evaluated):
    charts = [json.loads(c.proto.spec) for c in evaluated.get("plotly_chart")]
    assert len(charts) == 2  # the per-image distributions, and deletion's mean curves (its only curve metric)
    assert sum(t["type"] == "box" for t in charts[0]["data"]) == len(CHOSEN_METHODS) * len(CHOSEN_METRICS)
    curves = charts[1]["data"]
    assert len(curves) == len(CHOSEN_METHODS) and all(len(t["y"]) == DELETION_STEPS + 1 for t in curves)
    explore = [b.key for b in evaluated.button if b.key and b.key.startswith(f"{KEY}.explore.")]
    assert len(explore) == 6  # 3 worst and 3 best of the 6 images
    downloads = {b.key for b in evaluated.get("download_button")}
    assert {f"{KEY}.csv", f"{KEY}.json", "view.evaluation_methods_by_metrics.csv"} <= downloads


def test_a_rerun_after_a_widget_change_needs_no_new_computation(evaluated, monkeypatch):
    before = evaluated.dataframe[0].value

    def no_computation(*args, **kwargs):
        raise AssertionError("the evaluation was computed again")
    monkeypatch.setattr(xai_core.evaluation, "run_evaluation", no_computation)
    _widget(evaluated, f"{KEY}.distribution").set_value("violin")
    _run(evaluated)
    assert evaluated.dataframe[0].value.equals(before)
    assert any(t["type"] == "violin" for t in json.loads(evaluated.get("plotly_chart")[0].proto.spec)["data"])


def test_explore_makes_a_gallery_image_the_sidebars_image_and_target(evaluated):
    evaluated.button(key=f"{KEY}.explore.Best.0").click()
    _run(evaluated)
    assert evaluated.sidebar.radio(key="w.source").value == "Dataset sample"
    index = evaluated.sidebar.number_input(key="w.index").value
    assert evaluated.sidebar.number_input(key="w.seed").value == 0 and 0 <= index < N
    assert evaluated.sidebar.radio(key="w.target_mode").value == "Choose a class"
    assert evaluated.sidebar.selectbox(key="w.target").value == dataset.make_sample(0, index).class_name
    assert len(evaluated.toast) == 1 and f"embedded:0:{index}" in _plain(evaluated.toast[0].value)


def _plain(markdown: str) -> str:
    """A toast's text as shown: user text reaches it escaped (``ui.text.as_text``)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def _offered(monkeypatch, folder: Path) -> str:
    """``folder`` offered on the page (the only dataset under ``$XAI_DATA_DIRS``): its name there."""
    monkeypatch.setenv("XAI_DATA_DIRS", str(folder.parent))
    return f"{folder.parent.name}/{folder.name}"


def test_a_folder_whose_labels_are_no_classes_shows_one_error_and_keeps_the_choices(tmp_path, monkeypatch):
    (tmp_path / "other" / "not_a_class").mkdir(parents=True)
    (tmp_path / "other" / "not_a_class" / "0.png").write_bytes(b"")
    name = _offered(monkeypatch, tmp_path / "other")
    at = _run(AppTest.from_file(PAGE, default_timeout=TIMEOUT))
    _widget(at, f"{KEY}.images").set_value("Folder")
    _run(at)
    assert _widget(at, f"{KEY}.folder").options == [name]
    _widget(at, f"{KEY}.run").click()
    _run(at)
    assert len(at.error) == 1 and r"not\_a\_class" in at.error[0].value
    assert _widget(at, f"{KEY}.folder").value == name
    assert not at.dataframe


def test_a_dataset_export_folder_is_evaluated_and_explore_makes_its_image_the_sidebars_upload(tmp_path, monkeypatch):
    dataset.export(3, 4, tmp_path / "export")
    name = _offered(monkeypatch, tmp_path / "export")
    at = _run(AppTest.from_file(PAGE, default_timeout=TIMEOUT))
    _widget(at, f"{KEY}.images").set_value("Folder")
    _run(at)
    _widget(at, f"{KEY}.folder").set_value(name)
    _widget(at, f"{KEY}.n").set_value(4)
    _widget(at, f"{KEY}.metrics").set_value(["pointing_game"])
    _run(at)
    _widget(at, f"{KEY}.run").click()
    _run(at)
    assert not at.error, [e.value for e in at.error]
    assert len(at.dataframe[0].value) == 2  # saliency and Grad-CAM × pointing game
    at.button(key=f"{KEY}.explore.Worst.0").click()
    _run(at)
    assert at.sidebar.radio(key="w.source").value == "Upload"
    shown = at.toast[0].value.split(" (target")[0]  # the path in the folder as markdown text, e.g. 0/00000.png
    image = _plain(shown)
    assert (tmp_path / "export" / image).is_file()
    assert [b.label for b in at.sidebar.button] == [f"Remove {shown}"]  # the sidebar's upload is that file


# ----------------------------------------------------------------------------- session helpers
class _Stop(Exception):
    pass


def test_a_stopped_evaluation_keeps_its_finished_batches_and_a_rerun_reuses_them(embedded):
    request = EvaluationRequest("embedded:4", "object", 10, 4, named_params({"saliency": {}}),
                                named_params({"pointing_game": {}, "relevance_mass_accuracy": {}}))

    def stop_in_the_second_batch(images: float) -> None:
        if images > 5:
            raise _Stop
    with pytest.raises(_Stop):
        evaluate(embedded, "stop-test", request, stop_in_the_second_batch)
    partial, done = stored(embedded, "stop-test", request)
    assert done == 4 and {r["index"] for r in partial.rows} == {0, 1, 2, 3}
    reports = []
    full = evaluate(embedded, "stop-test", request, reports.append)
    assert reports[0] == 4  # the first batch came from the store
    reference = run_evaluation(embedded, "embedded:4", {"saliency": {}},
                               {"pointing_game": {}, "relevance_mass_accuracy": {}}, n=10, batch_size=4)
    # Equal to float rounding: the page's shared engine may batch the maps' items differently.
    assert _without_scores(full.rows) == _without_scores(reference.rows)
    np.testing.assert_allclose([r["score"] for r in full.rows], [r["score"] for r in reference.rows], rtol=1e-6)
    assert partial.rows == full.rows[:len(partial.rows)]
    reports = []
    evaluate(embedded, "stop-test", dataclasses.replace(request, n=12), reports.append)
    assert reports[:2] == [4, 8]  # 12 embedded images start with the 10's: their first two batches are reused


def _without_scores(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "score"} for r in rows]


def test_the_time_left_is_the_rate_so_far_applied_to_the_images_left():
    assert time_left(10.0, 4, 12) == pytest.approx(30.0)
    assert time_left(0.0, 0, 12) is None
    assert [duration(s) for s in (0.4, 4.4, 125, 3_780)] == ["under 1 s", "4 s", "2 min 05 s", "1 h 03 min"]
    drawn, times = [], iter([100.0, 110.0, 112.0])
    progress = EvaluationProgress(lambda fraction, text: drawn.append((fraction, text)), 16, clock=lambda: next(times))
    progress(4)   # e.g. a batch from the store: the clock starts here, not at 0 images
    progress(8)
    progress(10)
    assert drawn == [(0.25, "4/16 images"), (0.5, "8/16 images · about 20 s left"),
                     (0.625, "10/16 images · about 12 s left")]


def _rows(scores: list[float], method: str = "m", metric: str = "k") -> list[dict]:
    return [{"index": i, "image": f"img{i}", "label": 0, "method": method, "metric": metric, "score": s}
            for i, s in enumerate(scores)]


def test_extremes_follow_the_metrics_direction_and_skip_undefined_scores():
    rows = _rows([0.5, math.nan, 0.9, 0.1, 0.5, 0.2, 0.7]) + _rows([7.0], method="other")
    worst, best = extremes(rows, "m", "k", 2, higher_is_better=True)
    assert [r["index"] for r in worst] == [3, 5] and [r["index"] for r in best] == [2, 6]
    worst, best = extremes(rows, "m", "k", 2, higher_is_better=False)
    assert [r["index"] for r in worst] == [2, 6] and [r["index"] for r in best] == [3, 5]
    # Fewer than 2k images: half each, never the same image in both (equal scores: best = lower index).
    worst, best = extremes(_rows([1.0, 1.0, 1.0, 1.0, 1.0]), "m", "k", 4, higher_is_better=True)
    assert [r["index"] for r in worst] == [4, 3] and [r["index"] for r in best] == [0, 1]


def test_distributions_leave_out_nan_and_the_per_image_table_has_one_column_per_pair():
    rows = _rows([0.2, math.nan, 0.6]) + _rows([1.0, 2.0, 3.0], metric="j")
    metrics = [METRICS["pointing_game"], METRICS["deletion"]]
    renamed = [dict(r, metric={"k": "pointing_game", "j": "deletion"}[r["metric"]]) for r in rows]
    labels = {"m": "M", "pointing_game": "PG", "deletion": "Del"}
    fig = score_distributions(renamed, ["m"], metrics, labels, "box")
    assert [list(t.y) for t in fig.data] == [[0.2, 0.6], [1.0, 2.0, 3.0]]
    assert all(isinstance(t, go.Box) for t in fig.data)
    assert [a.text for a in fig.layout.annotations] == ["PG ↑", "Del ↓"]
    wide = per_image_frame(renamed, labels)
    assert list(wide.columns) == ["index", "image", "label", "M · PG", "M · Del"] and len(wide) == 3
    assert math.isnan(wide["M · PG"][1]) and wide["M · Del"].tolist() == [1.0, 2.0, 3.0]
