"""`python -m xai_core`: JSON output, npz contents, one-line errors with a non-zero exit, both
dataset-folder layouts end to end, defaults read from the library, subcommands apart from the parser."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from xai_core import dataset, rig
from xai_core.cli import main
from xai_core.cli.entry import build_parser
from xai_core.embedded import save_embedded
from xai_core.embedded_vgg import EmbeddedVGG
from xai_core.inversion import InversionSettings
from xai_core.methods import METHODS

PACKAGE = Path(__file__).resolve().parent.parent / "xai_core"


def run_json(capsys, *argv):
    code = main([*argv, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


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
    (["dataset-eval", "--model", "embedded", "--seed", "1", "--n", "0"], "--n must be at least 1"),
    (["dataset-eval", "--model", "embedded"], "--data"),
    (["dataset-eval", "--model", "embedded", "--data", "no_such_dir"], "does not exist"),
    (["explain", "--model", "embedded", "--image", "{img}", "--method", "smoothgrad",
      "--param", "base=saliency", "--param", "base.bogus=1", "--out", "x.npz"], "bogus"),
    (["rig", "--model", "embedded", "--classes", "circle,circle", "--image", "{img}", "--out", "x.npz"],
     "two different classes"),
])
def test_bad_input_is_one_line_and_non_zero(capsys, sample_png, argv, fragment):
    argv = [a.replace("{img}", str(sample_png)) for a in argv]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err


HUGE = str(10**8)
FINETUNE = ["finetune", "--model", "embedded", "--data", "shortcut-train:1", "--val", "shortcut:2", "--out", "f.pt"]
RIG = ["rig", "--model", "embedded", "--classes", "6,7", "--image", "{img}", "--out", "r.npz"]
INVERT = ["invert", "--model", "embedded", "--target", "0", "--out", "i.png"]


@pytest.mark.parametrize("argv, limit", [
    (["dataset-eval", "--model", "embedded", "--seed", "1", "--n", HUGE], "at least 1 and at most 20,000"),
    (["dataset-export", "--seed", "1", "--n", HUGE, "--out", "ds"], "at least 1 and at most 20,000"),
    (["evaluate", "--model", "embedded", "--data", "embedded:1", "-n", HUGE, "--methods", "saliency",
      "--metrics", "deletion", "--out", "e.csv"], "at least 1 and at most 20,000"),
    (["evaluate", "--model", "embedded", "--data", "embedded:1", "-n", "4", "--batch-size", HUGE,
      "--methods", "saliency", "--metrics", "deletion", "--out", "e.csv"], "at least 1 and at most 4,096"),
    ([*FINETUNE, "-n", HUGE, "--val-n", "4"], "at least 1 and at most 4,096"),
    ([*FINETUNE, "-n", "4", "--val-n", "0"], "at least 1 and at most 4,096"),
    ([*FINETUNE, "-n", "4", "--val-n", "4", "--epochs", HUGE], "at least 1 and at most 1,000"),
    ([*FINETUNE, "-n", "4", "--val-n", "4", "--micro-batch", HUGE], "at least 1 and at most 4,096"),
    ([*FINETUNE, "-n", "4", "--val-n", "4", "--accumulate", "0"], "at least 1 and at most 4,096"),
    ([*FINETUNE, "-n", "4", "--val-n", "4", "--lr", "nan"], "--lr must be a finite number"),
    (["predict", "{img}", "--model", "embedded", "--topk", HUGE], "at least 1 and at most 4,096"),
    ([*RIG, "--steps", "0"], "outside [2, 1024]"),
    ([*RIG, "--steps", str(10**7)], "outside [2, 1024]"),
    ([*RIG, "--n", HUGE], "outside [2, 20000]"),
    ([*RIG, "--epochs", HUGE], "outside [1, 1000]"),
    ([*RIG, "--alphas", "0,nan"], "finite number"),
    ([*RIG, "--alphas", "0,inf"], "finite number"),
    ([*RIG, "--lr", "inf"], "--lr must be a finite number"),
    ([*RIG, "--tau", "nan"], "--tau must be a finite number"),
    ([*INVERT, "--steps", HUGE], "outside [1, 10000]"),
    ([*INVERT, "--l2", "nan"], "--l2 must be a finite number"),
])
def test_counts_and_settings_that_size_work_are_refused_with_their_limit(capsys, sample_png, tmp_path,
                                                                          monkeypatch, argv, limit):
    monkeypatch.chdir(tmp_path)
    assert main([a.replace("{img}", str(sample_png)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and limit in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # refused before any work: nothing written


@pytest.mark.parametrize("argv, message", [
    (["explain", "--model", "embedded", "--image", "{img}", "--method", "saliency", "--out", "{dir}"],
     "must be a file, got the folder"),
    (["explain", "--model", "embedded", "--image", "{img}", "--method", "saliency", "--out", "map"],
     "must be a .npz file"),
    (["explain", "--model", "embedded", "--image", "{img}", "--method", "saliency", "--out", "map.png"],
     "must be a .npz file"),
    ([*RIG[:-1], "r.png"], "must be a .npz file"),
    ([*RIG[:-1], "{dir}"], "must be a file, got the folder"),
    (["evaluate", "--model", "embedded", "--data", "embedded:1", "-n", "4", "--methods", "saliency",
      "--metrics", "deletion", "--out", "rows.json"], "must be a .csv file"),
    ([*FINETUNE[:-1], "{dir}", "-n", "4", "--val-n", "4"], "must be a file, got the folder"),
    ([*INVERT[:-1], "i.jpg"], "must be a .png file"),
    (["dataset-export", "--seed", "1", "--n", "2", "--out", "{file}"], "must be a folder"),
])
def test_an_output_path_of_the_wrong_kind_is_refused_not_changed(capsys, sample_png, tmp_path, monkeypatch,
                                                                 argv, message):
    folder, existing = tmp_path / "folder", tmp_path / "existing.txt"
    folder.mkdir()
    existing.write_text("kept")
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{img}", str(sample_png)).replace("{dir}", str(folder)).replace("{file}", str(existing))
            for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt", "folder"] and not any(folder.iterdir())
    assert existing.read_text() == "kept"


def _minimal_argv(name: str, parser) -> list[str]:
    """A subcommand's required arguments with placeholder values (its handler is replaced)."""
    argv = [name]
    for action in parser._actions:
        if action.required or not action.option_strings and action.dest != "help":
            value = action.choices[0] if action.choices else "1"
            argv += [value] if not action.option_strings else [action.option_strings[-1], value]
    return argv


def test_json_output_never_writes_nan_in_any_subcommand(capsys, monkeypatch):
    from xai_core.cli import entry

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    nan_result = {"nan": float("nan"), "inf": np.float32("inf"), "list": [np.nan, 1.5],
                  "array": np.array([-np.inf, 2.0]), "nested": {"x": np.float64("nan")}}
    for sub in commands.values():
        sub.set_defaults(handler=lambda args: nan_result)
    monkeypatch.setattr(entry, "build_parser", lambda: parser)

    def no_constants(name):
        raise AssertionError(f"{name} in the JSON output")
    for name, sub in commands.items():
        assert main([*_minimal_argv(name, sub), "--json"]) == 0, (name, capsys.readouterr().err)
        assert json.loads(capsys.readouterr().out, parse_constant=no_constants) == {
            "nan": None, "inf": None, "list": [None, 1.5], "array": [None, 2.0], "nested": {"x": None}}, name
    assert {"models", "predict", "explain", "evaluate", "finetune", "rig", "invert", "dataset-eval"} <= set(commands)


def test_module_entry_point_runs_in_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "xai_core", "models", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert any(row["name"] == "embedded" for row in json.loads(proc.stdout))


def test_explain_help_lists_every_registered_method_with_its_parameters(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["explain", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name, method in METHODS.items():
        assert f"{name} — {method.label}" in text
        for param_name, param in method.params.items():
            assert " ".join(f"{param_name}: {param.describe()}".split()) in text


def test_composed_noise_tunnel_without_noise_is_its_base_method(capsys, tmp_path, sample_png):
    common = ["explain", "--model", "embedded", "--image", str(sample_png), "--target", "2"]
    run_json(capsys, *common, "--method", "guided_backprop", "--out", str(tmp_path / "base.npz"))
    tunnel = run_json(capsys, *common, "--method", "smoothgrad", "--param", "base=guided_backprop",
                      "--param", "noise=0", "--param", "samples=2", "--out", str(tmp_path / "tunnel.npz"))
    assert tunnel["params"]["base"] == "guided_backprop"
    with np.load(tmp_path / "base.npz") as base, np.load(tmp_path / "tunnel.npz") as smoothed:
        np.testing.assert_allclose(smoothed["map"], base["map"], rtol=1e-5, atol=1e-7)


def _args(*argv):
    return build_parser().parse_args(list(argv))


def test_command_line_defaults_are_the_librarys():
    args = _args("rig", "--model", "embedded", "--classes", "a,b", "--image", "x.png", "--out", "x.npz")
    assert rig.parse_alphas(args.alphas) == list(rig.DEFAULT_ALPHAS)
    assert (args.lr, args.epochs, args.tau, args.steps, args.n, args.seed) == (
        rig.DEFAULT_LR, rig.DEFAULT_EPOCHS, rig.DEFAULT_TAU, rig.DEFAULT_STEPS, rig.DEFAULT_N, rig.DEFAULT_SEED)
    args = _args("invert", "--model", "embedded", "--target", "0", "--out", "x.png")
    library = InversionSettings()
    assert InversionSettings(steps=args.steps, optimizer=args.optimizer, lr=args.lr, blur_every=args.blur_every,
                             blur_sigma=args.blur_sigma, l2=args.l2, tv=args.tv, jitter=args.jitter,
                             parameterization=args.parameterization, frame_every=library.frame_every,
                             seed=args.seed) == library
    assert library.blur_every == 4


def test_subcommand_modules_import_the_shared_helpers_never_the_parser():
    """No import cycle inside the CLI (the library-wide rules are in tests/test_architecture.py)."""
    for path in (PACKAGE / "cli").glob("*.py"):
        if path.name in ("entry.py", "__init__.py"):
            continue
        siblings = {(node.module or alias.name).split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom) and node.level == 1 for alias in node.names}
        assert siblings <= {"common"}, (path.name, siblings)


# ------------------------------------------------------------ dataset folders end to end
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """What dataset-export writes: 40 images (5 per class), masks and labels.csv."""
    out = tmp_path_factory.mktemp("export")
    assert main(["dataset-export", "--seed", "5", "--n", "40", "--out", str(out)]) == 0
    return out


def test_dataset_eval_on_an_export_equals_the_generated_split_in_both_layouts(capsys, exported):
    generated = run_json(capsys, "dataset-eval", "--model", "embedded", "--seed", "5", "--n", "40")
    for folder in (exported, exported / "images"):  # the export, and its ImageFolder of images
        evaluation = run_json(capsys, "dataset-eval", "--model", "embedded", "--data", str(folder))
        assert evaluation["n"] == 40
        assert evaluation["accuracy"] == generated["accuracy"] and evaluation["per_class"] == generated["per_class"]


def test_rig_trains_on_an_export_and_on_an_imagefolder_of_the_same_images(capsys, exported, tiny_checkpoint,
                                                                           tmp_path, monkeypatch):
    monkeypatch.setenv("XAI_LAB_CACHE", str(tmp_path / "cache"))
    pair = ",".join(dataset.CLASSES[c] for c in dataset.PART_PAIR)
    query = next((exported / "images" / dataset.CLASSES[dataset.PART_PAIR[0]]).iterdir())
    reports = []
    for folder in (exported, exported / "images"):
        out = tmp_path / f"{folder.name}.npz"
        reports.append(run_json(capsys, "rig", "--model", "embedded", "--checkpoint", str(tiny_checkpoint),
                                "--device", "cpu", "--classes", pair, "--data", str(folder), "--alphas", "0,2",
                                "--epochs", "1", "--steps", "4", "--tau", "0.5", "--image", str(query),
                                "--out", str(out)))
        with np.load(out) as saved:
            assert saved["ig"].shape == (2, 64, 64) and saved["rig"].shape == (2, 64, 64)
            assert saved["logits"].shape == (3, 2) and saved["region"].shape == (2, 64, 64)
            assert saved["network_maps"].shape == (2, 2, 64, 64)
            np.testing.assert_allclose(saved["ig"], saved["network_maps"][0])
            assert saved["classes"].tolist() == list(dataset.PART_PAIR)
    (first,), (second,) = (report["architectures"] for report in reports)
    assert first["networks"] == ["classifier", "α=2"]
    # Same images in the same order from either layout: the same training set, so the second run
    # reads the networks the first one stored (under XAI_LAB_CACHE).
    assert not first["loaded_from_disk"] and second["loaded_from_disk"] and first["store"] == second["store"]
    assert Path(first["store"]).parent == tmp_path / "cache" / "rig"


def test_rig_on_generated_embedded_images_with_tiny_settings(capsys, tiny_checkpoint, sample_png, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv("XAI_LAB_CACHE", str(tmp_path / "cache"))
    report = run_json(capsys, "rig", "--model", "embedded", "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
                      "--classes", "6,7", "--alphas", "0,2", "--epochs", "1", "--n", "8", "--steps", "4",
                      "--image", str(sample_png), "--out", str(tmp_path / "rig.npz"))
    (summary,) = report["architectures"]
    assert summary["data"] == "embedded dataset, seed 0, n 8" and set(summary["final_mse"]) == {"2"}
    assert summary["out"] == str(tmp_path / "rig.npz")  # one model: --out itself
    assert report["notices"] == []  # stored without trouble


def test_rig_reports_the_stores_notices_on_stderr_and_in_json(capsys, tiny_checkpoint, sample_png, tmp_path,
                                                             monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XAI_LAB_CACHE", str(tmp_path / "file" / "cache"))  # through a file: cannot be written
    argv = ["rig", "--model", "embedded", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--classes", "6,7",
            "--alphas", "0,2", "--epochs", "1", "--n", "8", "--steps", "4", "--image", str(sample_png),
            "--out", str(tmp_path / "rig.npz")]
    assert main(argv) == 0
    out = capsys.readouterr()
    notices = [line for line in out.err.splitlines() if line.startswith("notice: ")]
    assert len(notices) == 1 and "were not stored" in notices[0] and "trains them again" in notices[0]
    assert "Warning" not in out.err and "not stored" not in out.out  # once, as a notice, not as a warning
    report = run_json(capsys, *argv)
    assert report["notices"] == [notices[0].removeprefix("notice: ")]


def test_rig_on_two_architectures_writes_one_npz_and_both_tables_per_model(capsys, exported, tiny_checkpoint,
                                                                          sample_png, tmp_path, monkeypatch):
    monkeypatch.setenv("XAI_LAB_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(1)
    vgg_checkpoint = tmp_path / "tiny_vgg.pt"
    save_embedded(EmbeddedVGG(len(dataset.CLASSES), width=4, hidden=16), vgg_checkpoint)
    # Each --checkpoint belongs to the --model before it; the pair is matched by name in the second model.
    report = run_json(capsys, "rig", "--model", "embedded", "--checkpoint", str(tiny_checkpoint),
                      "--model", "embedded_vgg", "--checkpoint", str(vgg_checkpoint), "--device", "cpu",
                      "--classes", "hexagon_dot,HEXAGON_CROSS", "--data", str(exported), "--alphas", "0,2",
                      "--epochs", "1", "--steps", "4", "--image", str(sample_png), "--out", str(tmp_path / "rig.npz"))
    summaries = report["architectures"]
    assert [s["model"] for s in summaries] == ["embedded", "embedded_vgg"]
    assert len({s["store"] for s in summaries}) == 2
    pair = [dataset.CLASSES[c] for c in dataset.PART_PAIR]
    for summary in summaries:
        assert summary["out"] == str(tmp_path / f"rig_{summary['model']}.npz")
        with np.load(summary["out"]) as saved:
            assert saved["classes"].tolist() == list(dataset.PART_PAIR)
            assert saved["network_maps"].shape == (2, 2, 64, 64)
            np.testing.assert_allclose([[summary["logits"][row][name] for name in pair]
                                        for row in ("original", "rig_occluded", "ig_occluded")], saved["logits"])
        assert [row["network"] for row in summary["accuracy"]] == ["classifier", "α=2"]
        assert set(summary["accuracy"][0]) == {"network", *(f"{split} {name}" for split in ("train", "val")
                                                            for name in [*pair, "total"])}
    # Different weights give different logits: each table is its own model's.
    assert summaries[0]["logits"] != summaries[1]["logits"]
