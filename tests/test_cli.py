"""`python -m xai_core`: JSON output, npz contents, one-line errors with a non-zero exit."""
import json
import subprocess
import sys

import numpy as np
import pytest

from xai_core import dataset
from xai_core.cli import main


def run_json(capsys, *argv):
    code = main([*argv, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


@pytest.fixture(scope="module")
def sample_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "sample.png"
    dataset.make_sample(seed=123, index=0).pil().save(path)
    return path


def test_models_lists_every_model_with_weights_availability(capsys):
    rows = run_json(capsys, "models")
    names = {r["name"] for r in rows}
    assert {"embedded", "alexnet", "vgg16", "resnet18", "resnet50"} <= names
    assert {"convnext_tiny", "efficientnet_b0"} & names
    assert all(isinstance(r["weights_available"], bool) for r in rows)
    assert next(r for r in rows if r["name"] == "embedded")["weights_available"]


def test_predict_on_a_dataset_sample_finds_its_class(capsys, sample_png):
    label = dataset.make_sample(seed=123, index=0).label
    result = run_json(capsys, "predict", str(sample_png), "--model", "embedded", "--topk", "3")
    assert len(result["predictions"]) == 3
    assert result["predictions"][0]["index"] == label
    probs = [p["probability"] for p in result["predictions"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_explain_writes_the_documented_npz(capsys, tmp_path, sample_png):
    out = tmp_path / "sal.npz"
    name = dataset.CLASSES[1]
    result = run_json(capsys, "explain", "--model", "embedded", "--image", str(sample_png),
                      "--method", "saliency", "--target", name, "--out", str(out))
    assert result["target"] == 1
    with np.load(out) as data:
        c, h, w = data["input"].shape
        assert c == 3 and data["map"].shape == (h, w) and data["attribution"].shape == (c, h, w)
        assert int(data["target"]) == 1 and str(data["method"]) == "saliency"
        assert json.loads(str(data["params"])) == {}
        # The map is what the method defines: max over channels of |attribution|.
        np.testing.assert_allclose(data["map"], np.abs(data["attribution"]).max(0), rtol=1e-6)


def test_dataset_export_and_eval(capsys, tmp_path):
    result = run_json(capsys, "dataset-export", "--seed", "5", "--n", "6", "--out", str(tmp_path / "ds"))
    lines = (tmp_path / "ds" / "labels.csv").read_text().splitlines()
    assert lines[0].split(",")[:4] == ["image", "label", "object_mask", "part_mask"]
    assert len(lines) == 7 and result["n"] == 6
    evaluation = run_json(capsys, "dataset-eval", "--model", "embedded", "--seed", "777", "--n", "64")
    assert 0.9 <= evaluation["accuracy"] <= 1.0


@pytest.mark.parametrize("argv, fragment", [
    (["predict", "missing.png", "--model", "embedded"], "missing.png"),
    (["predict", "{img}", "--model", "no_such_model"], "no_such_model"),
    (["explain", "--model", "embedded", "--image", "{img}", "--method", "saliency",
      "--target", "999", "--out", "x.npz"], "out of range"),
    (["explain", "--model", "embedded", "--image", "{img}", "--method", "saliency",
      "--param", "bogus", "--out", "x.npz"], "KEY=VALUE"),
    (["dataset-eval", "--model", "embedded", "--seed", "1", "--n", "0"], "at least 1"),
])
def test_bad_input_is_one_line_and_non_zero(capsys, sample_png, argv, fragment):
    argv = [a.replace("{img}", str(sample_png)) for a in argv]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err


def test_module_entry_point_runs_in_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "xai_core", "models", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert any(row["name"] == "embedded" for row in json.loads(proc.stdout))
