"""The Fine-tune page under AppTest and its session: a default render, a run whose curves and start-vs-final
table match the models they describe, Stop/Resume keeping completed epochs, a constant loss refused, and
the downloaded checkpoint loading back into the same model, the Grad-CAM gallery matching the registered
method."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from ui.finetune_session import (FinetuneSession, check_shortcut_model, checkpoint_bytes, gradcam_maps,
                                 shortcut_splits)
from xai_core import shortcut_dataset
from xai_core.engine import Engine
from xai_core.errors import ParameterError
from xai_core.finetune import FinetuneConfig, localisation_terms
from xai_core.methods import explain
from xai_core.models import load_model

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "7_Fine_tune.py")
TIMEOUT = 120
TRAIN_SEED, VAL_SEED = 21, 22     # the page's


def _run(at: AppTest) -> AppTest:
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.message for e in at.exception]
    return at


def _small_page(epochs: int) -> AppTest:
    at = _run(AppTest.from_file(PAGE, default_timeout=TIMEOUT))
    for key, value in {"ft.epochs": epochs, "ft.n_train": 32, "ft.n_val": 16}.items():
        at.number_input(key=key).set_value(value)
    return at


def _accuracy(module: torch.nn.Module, split) -> float:
    with torch.no_grad():           # both modules are in eval mode: the shared one always, the copy after its run
        return float((module(split[0]).argmax(dim=1) == split[1]).float().mean())


@pytest.fixture(scope="module")
def shortcut_model():
    return load_model("embedded", checkpoint=shortcut_dataset.CHECKPOINT)


def test_default_render_has_no_error():
    at = _run(AppTest.from_file(PAGE, default_timeout=TIMEOUT))
    assert not at.error, [e.value for e in at.error]
    assert at.button(key="ft.start") is not None
    assert at.session_state["ft.state"]["run"] is None


def test_a_run_records_every_epoch_and_compares_start_with_final(shortcut_model):
    at = _small_page(epochs=2)
    at.button(key="ft.start").click()
    _run(at)
    assert not at.error, [e.value for e in at.error]
    run = at.session_state["ft.state"]["run"]
    assert [(r.split, r.epoch) for r in run.records] == [("train", 0), ("val", 0), ("train", 1), ("val", 1)]
    assert not at.session_state["ft.state"]["active"]

    # start: the shipped model's own accuracy on the page's validation images (shared model untouched)
    _, val = shortcut_splits(32, 16, TRAIN_SEED, VAL_SEED)
    start_accuracy = _accuracy(shortcut_model.module, val)
    table = at.dataframe[0].value
    assert table.loc["accuracy", "start"] == pytest.approx(start_accuracy)
    # final: the fine-tuned copy's, and its confusion matrix agrees with it
    final_accuracy = _accuracy(run.module, val)
    assert table.loc["accuracy", "final"] == pytest.approx(final_accuracy)
    assert table.loc["MAGTR", "final"] == pytest.approx(run.records[-1].magtr)
    # where the cue agrees (the training split): the copy's own accuracy there; pointing game from its maps
    train, _ = shortcut_splits(32, 16, TRAIN_SEED, VAL_SEED)
    assert table.loc["accuracy where the cue agrees (training split)", "final"] == pytest.approx(
        _accuracy(run.module, train))
    maps, _ = gradcam_maps(run.module, val, run.config.layer, torch.device("cpu"))
    hits = [bool(mask.flatten()[m.argmax()]) for m, mask in zip(maps, val[2])]
    assert table.loc["pointing game (Grad-CAM)", "final"] == pytest.approx(np.mean(hits))
    assert run.after.confusion.sum() == 16
    assert np.trace(run.after.confusion) / 16 == pytest.approx(final_accuracy)
    assert all(p.device.type == "cpu" for p in run.module.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(run.module.parameters(), shortcut_model.module.parameters()))


def test_stop_keeps_the_completed_epochs_and_resume_finishes(shortcut_model):
    train, val = shortcut_splits(16, 8, TRAIN_SEED, VAL_SEED)
    state: dict = {}
    session = FinetuneSession(state)
    session.start(shortcut_model, FinetuneConfig(layer=shortcut_model.default_layer, lr=1e-3, micro_batch=8),
                  3, train, val, Engine("cpu"))

    def interrupt_in_second_epoch(fraction: float, message: str) -> None:
        if fraction > 1 / 3:
            raise KeyboardInterrupt  # what a click does to the script: an exception out of the progress bar

    with pytest.raises(KeyboardInterrupt):
        session.advance(interrupt_in_second_epoch)
    assert session.run.epochs_done == 1 and session.running
    session.stop()
    assert not session.running and session.unfinished
    session.resume()
    session.advance(lambda fraction, message: None)
    assert [r.epoch for r in session.run.records if r.split == "val"] == [0, 1, 2]
    assert session.run.after is not None and not session.active


def test_a_constant_loss_is_refused_with_a_message():
    at = _small_page(epochs=1)
    for key in ("ft.k1", "ft.k2", "ft.k3"):
        at.slider(key=key).set_value(0.0)
    at.button(key="ft.start").click()
    _run(at)
    assert any("all zero" in e.value for e in at.error), [e.value for e in at.error]
    assert at.session_state["ft.state"]["run"] is None


def test_the_downloaded_checkpoint_loads_back_into_the_same_model(shortcut_model):
    train, val = shortcut_splits(16, 8, TRAIN_SEED, VAL_SEED)
    session = FinetuneSession({})
    session.start(shortcut_model, FinetuneConfig(layer=shortcut_model.default_layer, lr=1e-2, micro_batch=8,
                                                 trainable="head"), 1, train, val, Engine("cpu"))
    session.advance(lambda fraction, message: None)
    source = io.BytesIO(checkpoint_bytes(session.run.module))
    source.name = "shortcut_finetuned.pt"
    reloaded = load_model("embedded", checkpoint=source)
    with torch.no_grad():
        assert torch.allclose(reloaded.module(val[0]), session.run.module(val[0]), atol=1e-6)


def test_the_gallery_shows_registered_grad_cam_on_the_lowest_magtr_images(shortcut_model):
    train, val = shortcut_splits(8, 16, TRAIN_SEED, VAL_SEED)
    session = FinetuneSession({})
    session.start(shortcut_model, FinetuneConfig(layer=shortcut_model.default_layer), 1, train, val, Engine("cpu"))
    run = session.run
    maps = np.stack([explain(shortcut_model, x, "gradcam", targets=[int(label)])[0].map
                     for x, label in zip(val[0], val[1])])
    np.testing.assert_allclose(run.before.gallery_maps, maps[run.gallery], atol=1e-5)
    magtr = localisation_terms(torch.from_numpy(maps), val[2])["magtr"].numpy()
    assert magtr[run.gallery].max() <= np.delete(magtr, run.gallery).min() + 1e-6


def test_the_fine_tuned_model_becomes_the_sidebars_model_for_every_page(shortcut_model):
    at = _small_page(epochs=1)
    at.button(key="ft.start").click()
    _run(at)
    run = at.session_state["ft.state"]["run"]
    at.button(key="ft.use").click()
    _run(at)
    kept = at.session_state["xai.checkpoint"]
    assert (kept["arch"], kept["filename"]) == ("embedded", "shortcut_finetuned.pt")
    assert at.session_state["w.model"] == "embedded"
    assert any(r"Using shortcut\_finetuned.pt for embedded" in c.value for c in at.sidebar.caption)  # as text
    reloaded = load_model("embedded", checkpoint=io.BytesIO(kept["bytes"]))
    _, val = shortcut_splits(32, 16, TRAIN_SEED, VAL_SEED)
    with torch.no_grad():  # the sidebar now serves the fine-tuned weights, not the shipped ones
        assert torch.allclose(reloaded.module(val[0]), run.module(val[0]), atol=1e-6)


def test_the_curves_are_redrawn_after_every_epoch(shortcut_model):
    train, val = shortcut_splits(16, 8, TRAIN_SEED, VAL_SEED)
    seen = []
    session = FinetuneSession({}, on_epoch=lambda run: seen.append(run.epochs_done))
    session.start(shortcut_model, FinetuneConfig(layer=shortcut_model.default_layer, lr=1e-3, micro_batch=8), 3,
                  train, val, Engine("cpu"))
    session.advance(lambda fraction, message: None)
    assert seen == [1, 2, 3] and session.run.finished


def test_the_sidebars_model_can_be_fine_tuned_when_it_reads_the_shortcut_images(resnet_random):
    at = _small_page(epochs=1)
    at.radio(key="ft.source").set_value("the sidebar's model")
    at.button(key="ft.start").click()
    _run(at)
    assert not at.error, [e.value for e in at.error]
    run = at.session_state["ft.state"]["run"]
    assert run.finished and run.config.layer == "features.block4"  # the sidebar's default: the shipped embedded CNN
    with pytest.raises(ParameterError, match="does not classify the embedded shapes"):
        check_shortcut_model(resnet_random)


def test_the_training_images_follow_the_chosen_seed_and_cue_agreement():
    at = _small_page(epochs=1)
    at.slider(key="ft.agreement").set_value(0.125)
    at.number_input(key="ft.train_seed").set_value(5)
    at.button(key="ft.start").click()
    _run(at)
    run = at.session_state["ft.state"]["run"]
    train, val = shortcut_splits(32, 16, 5, VAL_SEED, 0.125)
    assert torch.equal(run.train[0], train[0]) and torch.equal(run.val[0], val[0])
    assert not torch.equal(run.train[0], shortcut_splits(32, 16, 5, VAL_SEED)[0][0])  # the cue moved
