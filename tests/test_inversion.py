"""Model inversion / class visualisation on a small random ResNet-18 (32×32 inputs, 10 classes)."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from xai_core import cli
from xai_core.errors import ParameterError
from xai_core.inversion import InversionRun, InversionSettings, invert
from xai_core.models import build_random

SIZE = 32


@pytest.fixture(scope="module")
def resnet():
    model = build_random("resnet18", num_classes=10, device="cpu", seed=0)
    return dataclasses.replace(model, input_size=SIZE, resize_size=SIZE)


def high_frequency_energy(images: np.ndarray, cutoff: float = 0.25) -> float:
    """Share of the spectral energy (mean removed) above ``cutoff`` cycles/pixel."""
    x = images.astype(np.float64)
    x = x - x.mean(axis=(-3, -2), keepdims=True)
    power = np.abs(np.fft.fft2(x, axes=(-3, -2))) ** 2
    fy, fx = np.fft.fftfreq(x.shape[-3]), np.fft.fftfreq(x.shape[-2])
    high = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) > cutoff
    return float(power[..., high, :].sum() / power.sum())


def test_inversion_raises_the_target_score_well_above_its_start(resnet):
    with torch.no_grad():
        noise_logits = resnet.module(0.5 * torch.randn(16, 3, SIZE, SIZE))
    spread = float(noise_logits[:, 3].std())
    result = invert(resnet, [3], InversionSettings(steps=30, lr=0.1))
    assert result.score_end[0] - result.score_start[0] > 20 * spread
    assert result.probability_end[0] > 0.5  # the target now dominates 10 classes
    # the history records every step, its scores climb, and the shared model got no .grad
    assert result.history["score"].shape == (30, 1)
    assert result.history["score"][-1, 0] > result.history["score"][0, 0]
    assert all(p.grad is None for p in resnet.module.parameters())
    assert result.images.shape == (1, SIZE, SIZE, 3) and result.images.dtype == np.uint8


def test_blur_lowers_high_frequency_energy_compared_with_none(resnet):
    common = dict(steps=12, lr=0.1, seed=1)
    plain = invert(resnet, [5], InversionSettings(**common, blur_every=0))
    blurred = invert(resnet, [5], InversionSettings(**common, blur_every=2, blur_sigma=1.0))
    assert high_frequency_energy(blurred.images) < 0.5 * high_frequency_energy(plain.images)
    # total variation, recorded whatever the weights, drops too
    assert blurred.history["tv"][-1, 0] < plain.history["tv"][-1, 0]


def test_several_classes_in_one_batch_match_separate_runs(resnet):
    settings = InversionSettings(steps=6, lr=0.05, blur_every=3, l2=0.01, tv=0.1, jitter=2, frame_every=3, seed=7)
    together = invert(resnet, [1, 4, 8], settings)
    for row, target in enumerate([1, 4, 8]):
        alone = invert(resnet, [target], settings)
        np.testing.assert_allclose(together.history["score"][:, row], alone.history["score"][:, 0],
                                   rtol=1e-4, atol=1e-4)
        assert np.abs(together.images[row].astype(int) - alone.images[0]).max() <= 1
    assert together.frame_steps == [0, 3, 6] and together.frames.shape == (3, 3, SIZE, SIZE, 3)


def test_a_stopped_run_keeps_what_it_reached(resnet):
    run = InversionRun(resnet, [2], InversionSettings(steps=50, frame_every=20))

    def progress(fraction, message):
        if run.steps_done == 3:
            raise KeyboardInterrupt  # e.g. streamlit interrupting the script when Stop is clicked

    with pytest.raises(KeyboardInterrupt):
        run.run(progress=progress)
    result = run.result()
    assert result.stopped and result.steps_done == 3 and result.history["score"].shape == (3, 1)
    assert result.frame_steps == [0, 3]  # the last frame is where it stopped
    assert not np.array_equal(result.frames[0], result.frames[-1])
    resumed = run.run(should_stop=lambda: run.steps_done >= 5)
    assert resumed.stopped and resumed.steps_done == 5


def test_fourier_parameterisation_reproduces_a_deep_dream_start_and_climbs(resnet):
    start = torch.rand(3, SIZE, SIZE) * 0.8 + 0.1  # in [0.1, 0.9]: inside the sigmoid's clamp
    x = (start - torch.tensor(resnet.mean).view(3, 1, 1)) / torch.tensor(resnet.std).view(3, 1, 1)
    run = InversionRun(resnet, [6], InversionSettings(steps=8, lr=0.05, parameterization="fourier"), start=x)
    first = run.result().frames[0][0].astype(int)
    assert np.abs(first - (start.permute(1, 2, 0).numpy() * 255).round()).max() <= 2
    result = run.run()
    assert result.score_end[0] > result.score_start[0]


def test_settings_are_validated(resnet):
    with pytest.raises(ParameterError, match="Optimiser"):
        invert(resnet, [0], InversionSettings(optimizer="lbfgs"))
    with pytest.raises(ParameterError, match="out of range"):
        invert(resnet, [10], InversionSettings(steps=1))


def test_invert_cli_json_reports_a_higher_end_score(tmp_path, capsys):
    embedded = build_random("embedded", seed=0)
    checkpoint = tmp_path / "embedded.pt"
    torch.save(embedded.module.state_dict(), checkpoint)
    out = tmp_path / "dream.png"
    code = cli.main(["invert", "--model", "embedded", "--checkpoint", str(checkpoint), "--target", "2",
                     "--steps", "8", "--seed", "3", "--device", "cpu", "--out", str(out), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["score_end"] > report["score_start"] and report["steps"] == 8 and report["target"] == 2
    assert out.is_file()
    assert cli.main(["invert", "--model", "embedded", "--checkpoint", str(checkpoint), "--target", "2",
                     "--out", str(tmp_path / "x.jpg")]) == 2
