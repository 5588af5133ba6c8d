"""`python -m xai_core` for a meeting: `--png` pictures equal to `xai_core.render`'s drawing of the
arrays the same run wrote, bad `--png` paths refused in one line, the registry in `--help`, and the
human-readable output carrying every number of `--json`."""
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from xai_core import dataset, render
from xai_core.cli import main
from xai_core.cli.common import number
from xai_core.methods import METHODS


def _reject_nan(constant):
    raise AssertionError(f"--json wrote {constant}: not valid JSON")


def run_both(capsys, *argv):
    """The same run with ``--json`` (parsed strictly: no NaN) and without: (result, human text)."""
    outputs = []
    for extra in (["--json"], []):
        code = main([*argv, *extra])
        out = capsys.readouterr()
        assert code == 0, out.err
        outputs.append(out.out)
    assert len(outputs[0].strip().splitlines()) == 1  # one JSON object
    return json.loads(outputs[0], parse_constant=_reject_nan), outputs[1]


def numbers(value):
    """Every number (not bool) in a JSON value."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def assert_human_has_every_number(result, text):
    assert not text.lstrip().startswith("{"), "human output must not be the JSON dump"
    missing = [n for n in numbers(result) if number(n) not in text]
    assert not missing, (missing, text)


def read_png(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def cells(picture, rows, cols, h, w):
    """Cut a ``render.tile`` grid of h×w pictures back into ``rows``×``cols`` cells; the gaps are white."""
    gap_y, gap_x = (picture.shape[0] - rows * h), (picture.shape[1] - cols * w)
    gap = gap_y // max(rows - 1, 1) if rows > 1 else gap_x // max(cols - 1, 1)
    assert picture.shape[:2] == (rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap)
    boxes = [[(slice(r * (h + gap), r * (h + gap) + h), slice(c * (w + gap), c * (w + gap) + w)) for c in range(cols)]
             for r in range(rows)]
    grid = [[picture[box].copy() for box in row] for row in boxes]
    blanked = picture.copy()
    for row in boxes:
        for box in row:
            blanked[box] = 255
    assert (blanked == 255).all()  # nothing but the cells and white gaps
    return grid


def test_explain_png_is_the_overlay_of_the_saved_map(capsys, tmp_path, sample_png, embedded):
    out, png = tmp_path / "ig.npz", tmp_path / "pictures" / "ig.png"
    result, text = run_both(capsys, "explain", "--model", "embedded", "--image", str(sample_png), "--method", "ig",
                            "--param", "steps=8", "--target", "3", "--out", str(out), "--png", str(png),
                            "--colormap", "inferno")
    with np.load(out) as saved:
        x, heatmap = torch.from_numpy(saved["input"]), saved["map"]
    assert heatmap.min() < 0 < heatmap.max()  # a signed map: its range matters
    picture = read_png(png)
    assert picture.shape == (*x.shape[-2:], 3)
    np.testing.assert_array_equal(picture, render.overlay(embedded.to_display(x), heatmap, "inferno"))
    assert result["png"] == str(png) and result["map_min"] == pytest.approx(float(heatmap.min()))
    assert_human_has_every_number(result, text)
    assert str(png) in text and dataset.CLASSES[3] in text and "ig" in text


def test_rig_png_is_ig_and_rig_side_by_side_per_class(capsys, tmp_path, sample_png, tiny_checkpoint, embedded,
                                                       monkeypatch):
    monkeypatch.setenv("XAI_LAB_CACHE", str(tmp_path / "cache"))
    out, png = tmp_path / "rig.npz", tmp_path / "rig.png"
    result, text = run_both(capsys, "rig", "--model", "embedded", "--checkpoint", str(tiny_checkpoint), "--device",
                            "cpu", "--classes", "6,7", "--alphas", "0,2", "--epochs", "1", "--n", "8", "--steps", "4",
                            "--image", str(sample_png), "--out", str(out), "--png", str(png))
    (summary,) = result["architectures"]
    assert summary["png"] == str(png)
    shown = embedded.to_display(embedded.preprocess(Image.open(sample_png).convert("RGB")))
    h, w = shown.shape[:2]
    grid = cells(read_png(png), 2, 2, h, w)
    with np.load(out) as saved:
        for c in range(2):
            np.testing.assert_array_equal(grid[c][0], render.overlay(shown, saved["ig"][c], render.DIVERGING))
            np.testing.assert_array_equal(grid[c][1], render.overlay(shown, saved["rig"][c], render.DIVERGING))
    assert_human_has_every_number(result, text)
    assert "Table 3" in text and "Table 1" in text


def test_invert_png_is_the_start_beside_the_final_image(capsys, tmp_path, sample_png, embedded):
    out, png = tmp_path / "final.png", tmp_path / "both.png"
    result, text = run_both(capsys, "invert", "--model", "embedded", "--device", "cpu", "--target", "2",
                            "--steps", "3", "--from", str(sample_png), "--out", str(out), "--png", str(png))
    final = read_png(out)
    start = embedded.to_display(embedded.preprocess(Image.open(sample_png).convert("RGB")))
    (start_cell, final_cell), = cells(read_png(png), 1, 2, *final.shape[:2])
    np.testing.assert_array_equal(start_cell, start)
    np.testing.assert_array_equal(final_cell, final)
    assert_human_has_every_number(result, text)


def test_dataset_commands_print_text_with_the_numbers_of_json(capsys, tmp_path):
    result, text = run_both(capsys, "dataset-eval", "--model", "embedded", "--seed", "3", "--n", "16")
    assert_human_has_every_number(result, text)
    assert all(name in text for name in result["per_class"])
    result, text = run_both(capsys, "dataset-export", "--seed", "5", "--n", "2", "--out", str(tmp_path / "ds"))
    assert_human_has_every_number(result, text)
    assert result["labels"] in text


@pytest.mark.parametrize("command", [
    ["explain", "--model", "embedded", "--image", "{img}", "--method", "saliency", "--out", "{tmp}/x.npz"],
    ["invert", "--model", "embedded", "--target", "0", "--steps", "1", "--out", "{tmp}/x.png"],
    ["rig", "--model", "embedded", "--classes", "6,7", "--image", "{img}", "--out", "{tmp}/x.npz"],
])
@pytest.mark.parametrize("png, fragment", [("{tmp}/x.jpg", "must be a .png file"), ("{tmp}", "folder"),
                                           ("{tmp}/new.png/", "folder")])
def test_a_bad_png_path_is_one_line_and_exit_2(capsys, tmp_path, sample_png, command, png, fragment):
    argv = [a.replace("{img}", str(sample_png)).replace("{tmp}", str(tmp_path)) for a in [*command, "--png", png]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--png" in err and fragment in err
    assert not list(tmp_path.iterdir())  # refused before any work: nothing written


def test_help_lists_every_registered_method_with_each_parameters_default(capsys):
    for argv, per_parameter in ((["explain", "--help"], True), (["--help"], False)):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert all(name in text for name in METHODS)
        if not per_parameter:
            continue
        starts = [text.index(f"{name} — {method.label}") for name, method in METHODS.items()]
        assert starts == sorted(starts)
        for (name, method), start, stop in zip(METHODS.items(), starts, [*starts[1:], len(text)]):
            block = text[start:stop]  # this method's own lines
            for param_name, param in method.params.items():
                default = "model default" if param.widget == "layer" else repr(param.default)
                assert f"{param_name}: " in block and f"(default {default})" in block, (name, param_name)
                for bound in (param.low, param.high):
                    assert bound is None or (f"{bound:g}" if param.kind is float else str(bound)) in block, (
                        name, param_name, bound)
