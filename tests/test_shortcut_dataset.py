"""The shortcut dataset: deterministic; its cue names the label in ≈ ``agreement`` of the correlated
split and is independent of it in the decorrelated one; the image is the plain dataset's except on
the cue, which is drawn in its class colour, away from the object; the ``shortcut:`` sources serve it;
the shipped shortcut model uses the cue."""
import numpy as np
import pytest
import torch

from xai_core import dataset, shortcut_dataset
from xai_core.errors import ParameterError
from xai_core.evaluation import open_source
from xai_core.models import load_model
from xai_core.shortcut_dataset import CUE_COLOURS, CUE_SIZE, DECORRELATED, TRAIN_AGREEMENT, make_shortcut_sample

SEED, N = 5, 640   # 640 = 80 images per class


@pytest.fixture(scope="module")
def correlated() -> list[shortcut_dataset.ShortcutSample]:
    return shortcut_dataset.shortcut_samples(SEED, N, TRAIN_AGREEMENT)


@pytest.fixture(scope="module")
def decorrelated() -> list[shortcut_dataset.ShortcutSample]:
    return shortcut_dataset.shortcut_samples(SEED, N, DECORRELATED)


def test_same_seed_and_index_give_the_same_sample():
    first, again = make_shortcut_sample(3, 17), make_shortcut_sample(3, 17)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.cue_mask, again.cue_mask)
    assert first.cue_label == again.cue_label
    assert not np.array_equal(first.image, make_shortcut_sample(4, 17).image)


def test_the_cue_names_the_label_in_the_agreed_share_of_the_correlated_split(correlated):
    agreement = np.mean([s.cue_agrees for s in correlated])
    assert abs(agreement - TRAIN_AGREEMENT) < 0.03, agreement   # binomial sd 0.009
    disagreeing = [s.cue_label for s in correlated if not s.cue_agrees]
    assert len(set(disagreeing)) > 1  # the wrong cues are spread over the other classes


def test_the_cue_is_independent_of_the_label_in_the_decorrelated_split(decorrelated):
    assert abs(np.mean([s.cue_agrees for s in decorrelated]) - 1 / 8) < 0.04   # binomial sd 0.013
    counts = np.zeros((8, 8))
    for s in decorrelated:
        counts[s.label, s.cue_label] += 1
    # Every (label, cue) cell is expected 10 times: a cue tied to the label would empty most of them.
    assert counts.min() >= 2 and counts.max() <= 22, counts


def test_ground_truth_and_pixels_off_the_cue_are_the_plain_datasets(correlated):
    for index in range(0, N, 37):
        shortcut, plain = correlated[index], dataset.make_sample(SEED, index)
        assert shortcut.label == plain.label and shortcut.box == plain.box
        assert np.array_equal(shortcut.object_mask, plain.object_mask)
        assert np.array_equal(shortcut.part_mask, plain.part_mask)
        assert np.array_equal(shortcut.image[~shortcut.cue_mask], plain.image[~shortcut.cue_mask])


def test_the_cue_is_a_framed_patch_of_its_class_colour_in_a_corner_away_from_the_object(correlated):
    for s in correlated:
        ys, xs = np.nonzero(s.cue_mask)
        assert s.cue_mask.sum() == CUE_SIZE ** 2 and np.ptp(ys) == np.ptp(xs) == CUE_SIZE - 1
        last = dataset.IMAGE_SIZE - 1
        assert min(ys.min(), last - ys.max()) <= 1 and min(xs.min(), last - xs.max()) <= 1  # in a corner
        near = np.zeros_like(s.cue_mask)
        near[max(0, ys.min() - 2):ys.max() + 3, max(0, xs.min() - 2):xs.max() + 3] = True
        assert not (near & s.object_mask).any()
        centre = s.image[ys.min() + CUE_SIZE // 2, xs.min() + CUE_SIZE // 2]
        assert np.array_equal(centre, CUE_COLOURS[s.cue_label] * 255)


def test_agreement_outside_zero_one_is_refused():
    with pytest.raises(ParameterError, match="agreement"):
        make_shortcut_sample(0, 0, 1.5)


def test_the_shortcut_sources_serve_the_splits_with_the_embedded_ground_truth(embedded):
    indices = [0, 9, 14]
    plain = open_source(f"embedded:{SEED}", embedded).load(indices)
    for name, agreement in [(f"shortcut:{SEED}", DECORRELATED), (f"shortcut-train:{SEED}", TRAIN_AGREEMENT)]:
        batch = open_source(name, embedded).load(indices)
        assert batch.ids == [f"{name}:{i}" for i in indices]
        assert torch.equal(batch.masks, plain.masks) and torch.equal(batch.labels, plain.labels)
        expected = [embedded.preprocess(make_shortcut_sample(SEED, i, agreement).pil()) for i in indices]
        assert torch.equal(batch.images, torch.stack(expected))
    with pytest.raises(ParameterError, match="shortcut:SEED"):
        open_source("shortcut:x", embedded)


@torch.no_grad()
def test_the_shipped_shortcut_model_follows_the_cue(correlated, decorrelated):
    model = load_model("embedded", checkpoint=shortcut_dataset.CHECKPOINT, device="cpu").module

    def predict(samples):
        return model(dataset.normalize(np.stack([s.image for s in samples]))).argmax(1).numpy()

    labels = np.array([s.label for s in correlated])
    accuracy = {name: np.mean(predict(samples) == labels)
                for name, samples in [("correlated", correlated), ("decorrelated", decorrelated)]}
    assert accuracy["correlated"] > 0.9 and accuracy["correlated"] - accuracy["decorrelated"] > 0.3, accuracy
    disagreeing = [s for s in decorrelated if not s.cue_agrees]
    follows = np.mean(predict(disagreeing) == np.array([s.cue_label for s in disagreeing]))
    # A model blind to the cue picks the cue's class in ≈ 1/7 of its errors, so in at most ~1/7 of these images.
    assert follows > 0.15, follows
