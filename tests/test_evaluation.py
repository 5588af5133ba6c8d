"""The evaluation runner, its statistics and the ``evaluate`` command.

A stand-in metric with a closed form (the share of a map's positive mass inside the box, NaN on
odd labels, with a two-point curve) checks that every image × method × metric is scored against
its own ground truth; real metrics check that results do not depend on the batch size or the
sharding; the bootstrap is checked where its answer is known."""
import csv
import json
import math

import numpy as np
import pytest
import torch

from xai_core import dataset
from xai_core.cli.entry import main
from xai_core.errors import ParameterError
from xai_core.evaluation import (ROW_COLUMNS, bootstrap_interval, merge_results, result_json, run_evaluation,
                                 summarise, write_csv)
from xai_core.methods import explain
from xai_core.metrics import METRICS, Metric, MetricOutput

SOURCE = "embedded:5"
STAND_IN = "box_share_test"


def _box_share(maps, truth, context):
    """Share of each map's positive mass inside its box; NaN where the label is odd."""
    positive = maps.clamp(min=0).double()
    ys, xs = torch.meshgrid(torch.arange(maps.shape[1]), torch.arange(maps.shape[2]), indexing="ij")
    x0, y0, x1, y1 = (c.view(-1, 1, 1) for c in truth.boxes.cpu().unbind(1))
    inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    share = (positive * inside).sum((1, 2)) / positive.sum((1, 2))
    share[context.targets.cpu() % 2 == 1] = math.nan
    return MetricOutput(scores=share, curves=torch.stack([share, 1 - share], 1), curve_x=["inside", "outside"])


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setitem(METRICS, STAND_IN, Metric(STAND_IN, "Box share (test)", "localisation", _box_share,
                                                  needs=frozenset({"box", "model"})))
    return STAND_IN


def test_every_image_method_and_metric_is_scored_against_its_own_ground_truth(embedded, stand_in):
    n, methods = 6, {"saliency": {}, "gradcam": {}}
    result = run_evaluation(embedded, SOURCE, methods, {stand_in: {}}, n=n, batch_size=4)
    assert [(r["index"], r["method"]) for r in result.rows] == [(i, m) for i in range(n) for m in methods]
    for row in result.rows:
        sample = dataset.make_sample(5, row["index"])
        assert row["image"] == f"embedded:5:{row['index']}" and row["label"] == sample.label
        [alone] = explain(embedded, sample.pil(), row["method"], sample.label)  # one image, one call
        x0, y0, x1, y1 = sample.box
        positive = np.clip(alone.map, 0, None).astype(np.float64)
        expected = positive[y0:y1, x0:x1].sum() / positive.sum() if sample.label % 2 == 0 else math.nan
        assert row["score"] == pytest.approx(expected, rel=1e-5, nan_ok=True)
    summary = {(s["method"], s["metric"]): s for s in result.summary}
    for method in methods:
        scores = [r["score"] for r in result.rows if r["method"] == method]
        finite = [s for s in scores if math.isfinite(s)]
        assert summary[(method, stand_in)] == {"method": method, "metric": stand_in, **summarise(scores),
                                               "higher_is_better": True}
        assert summary[(method, stand_in)]["n"] == len(finite) == 3
        curve = result.curves[(method, stand_in)]
        assert curve.x == ["inside", "outside"] and curve.n == 3
        np.testing.assert_allclose(curve.mean, [np.mean(finite), 1 - np.mean(finite)], rtol=1e-12)


def test_results_are_the_same_whatever_the_batch_size_and_the_sharding(embedded):
    methods = {"gradcam": {}, "ig": {"steps": 4}}
    metrics = {"pointing_game": {}, "magtr": {"region": "mask"}, "deletion": {"steps": 4}}
    run = lambda **kw: run_evaluation(embedded, SOURCE, methods, metrics, n=8, **kw)  # noqa: E731
    whole = run(batch_size=3)
    shards = merge_results([run(batch_size=3, shard=(r, 2)) for r in (1, 0)])  # blocks {0, 2} and {1}
    assert shards.rows == whole.rows and shards.summary == whole.summary  # bit for bit
    for key, curve in whole.curves.items():
        assert np.array_equal(shards.curves[key].mean, curve.mean) and shards.curves[key].x == curve.x
    other = run(batch_size=8)
    assert [{**r, "score": None} for r in other.rows] == [{**r, "score": None} for r in whole.rows]
    np.testing.assert_allclose([r["score"] for r in other.rows], [r["score"] for r in whole.rows], atol=1e-6)


def test_progress_reports_the_images_done(embedded, stand_in):
    reports = []
    run_evaluation(embedded, SOURCE, {"saliency": {}}, {stand_in: {}}, n=5, batch_size=2,
                   progress=lambda fraction, message: reports.append((fraction, message)))
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 < fractions[0]
    assert [m for f, m in reports if f in (0.4, 0.8, 1.0) and m.endswith("images")] == \
        ["2/5 images", "4/5 images", "5/5 images"]


def test_impossible_requests_fail_before_any_image_with_one_sentence(embedded, stand_in, tmp_path):
    for image in range(2):
        (tmp_path / "circle").mkdir(exist_ok=True)
        dataset.make_sample(1, 0).pil().save(tmp_path / "circle" / f"{image}.png")
    cases = [({"nope": {}}, {stand_in: {}}, SOURCE, "Unknown method 'nope'"),
             ({"saliency": {}}, {"nope": {}}, SOURCE, "Unknown metric 'nope'"),
             ({"ig": {"steps": 1}}, {stand_in: {}}, SOURCE, "steps"),
             ({"saliency": {}}, {"deletion": {"steps": "x"}}, SOURCE, "steps"),
             ({"saliency": {}}, {"pointing_game": {}}, str(tmp_path), "no ground truth"),
             ({}, {stand_in: {}}, SOURCE, "at least one method")]
    for methods, metrics, source, message in cases:
        with pytest.raises(ParameterError, match=message):
            run_evaluation(embedded, source, methods, metrics, n=2)
    with pytest.raises(ParameterError, match="Shard 2 of 2"):
        run_evaluation(embedded, SOURCE, {"saliency": {}}, {stand_in: {}}, n=2, shard=(2, 2))
    folder = run_evaluation(embedded, str(tmp_path), {"saliency": {}}, {"deletion": {"steps": 4}}, n=2)
    assert [r["image"] for r in folder.rows] == ["circle/0.png", "circle/1.png"]  # no ground truth needed


def test_rows_go_to_csv_and_json_exactly(embedded, stand_in, tmp_path):
    result = run_evaluation(embedded, SOURCE, {"saliency": {}}, {stand_in: {}}, n=3)
    write_csv(result.rows, tmp_path / "rows.csv")
    with open(tmp_path / "rows.csv", newline="") as f:
        read = list(csv.DictReader(f))
    assert tuple(read[0]) == ROW_COLUMNS and len(read) == 3
    assert [float(r["score"]) for r in read] == pytest.approx([r["score"] for r in result.rows], rel=0, nan_ok=True)
    as_json = json.loads(json.dumps(result_json(result), allow_nan=False))  # NaN became null
    assert as_json["rows"][1]["score"] is None and as_json["rows"][0]["score"] == result.rows[0]["score"]
    assert as_json["curves"][0]["x"] == ["inside", "outside"] and len(as_json["summary"]) == 1


# ------------------------------------------------------------------ statistics
def test_constant_scores_have_a_zero_width_interval():
    low, high = bootstrap_interval([0.25] * 40)
    assert low == high == pytest.approx(0.25, abs=1e-15)
    assert summarise([0.25, math.nan, 0.25]) == {"mean": 0.25, "ci_low": low, "ci_high": high, "n": 2}
    nothing = summarise([math.nan])
    assert nothing["n"] == 0 and all(math.isnan(nothing[k]) for k in ("mean", "ci_low", "ci_high"))


def test_the_bootstrap_interval_is_seeded_and_matches_normal_theory():
    sample = np.random.default_rng(3).normal(2.0, 1.5, 2000)
    low, high = bootstrap_interval(sample, seed=7)
    assert (low, high) == bootstrap_interval(sample, seed=7) != bootstrap_interval(sample, seed=8)
    half = 1.959964 * sample.std(ddof=1) / math.sqrt(len(sample))  # the normal interval of the mean
    assert (high - low) / 2 == pytest.approx(half, rel=0.08)
    assert (low + high) / 2 == pytest.approx(sample.mean(), abs=0.1 * half)


def test_the_95_percent_interval_covers_the_true_mean_as_often_as_the_t_interval():
    rng = np.random.default_rng(0)
    samples = [rng.normal(0, 1, 200) for _ in range(400)]
    bootstrap = np.mean([low <= 0 <= high for low, high in
                         (bootstrap_interval(x, resamples=1000, seed=s) for s, x in enumerate(samples))])
    student = np.mean([abs(x.mean()) <= 1.972 * x.std(ddof=1) / math.sqrt(len(x)) for x in samples])  # t(199)
    assert 0.90 <= bootstrap <= 0.98 and abs(bootstrap - student) <= 0.02  # binomial sd at 400 trials: 1.1 %


# ------------------------------------------------------------------ command line
def _evaluate(tmp_path, *extra):
    out = tmp_path / "results.csv"
    code = main(["evaluate", "--model", "embedded", "--device", "cpu", "--data", SOURCE, "--n", "4",
                 "--methods", "saliency,gradcam", "--metrics", "pointing_game,magtr",
                 "--metric-param", "magtr.region=mask", "--batch-size", "3", "--out", str(out), *extra])
    return code, out


def test_the_command_writes_the_rows_and_prints_the_table(embedded, tmp_path, capsys):
    code, out = _evaluate(tmp_path)
    assert code == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["method", "metric", "mean", "95%", "CI", "n", "better"] and len(table) == 5
    expected = run_evaluation(embedded, SOURCE, {"saliency": {}, "gradcam": {}},
                              {"pointing_game": {}, "magtr": {"region": "mask"}}, n=4, batch_size=3)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["index"]), r["method"], r["metric"], float(r["score"])) for r in rows] == \
        [(r["index"], r["method"], r["metric"], r["score"]) for r in expected.rows]
    assert table[1].split()[:3] == ["saliency", "pointing_game", f"{expected.summary[0]['mean']:.4f}"]


def test_the_command_prints_one_json_object(tmp_path, capsys):
    code, out = _evaluate(tmp_path, "--json")
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["out"] == str(out) and printed["processes"] == 1
    assert [(s["method"], s["metric"]) for s in printed["summary"]] == [
        ("saliency", "pointing_game"), ("saliency", "magtr"), ("gradcam", "pointing_game"), ("gradcam", "magtr")]


@pytest.mark.parametrize("extra, message", [
    (["--param", "rise.masks=100"], "'rise' is not one of saliency, gradcam"),
    (["--param", "steps=3"], "NAME.KEY=VALUE"),
    (["--metric-param", "magtr.tolerance=3"], "no parameter tolerance"),
    (["--metrics", "pointing_game,nope"], "Unknown metric 'nope'"),
    (["--n", "0"], "--n must be at least 1"),
])
def test_command_errors_exit_2_with_one_line(tmp_path, capsys, extra, message):
    code, _ = _evaluate(tmp_path, *extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1

