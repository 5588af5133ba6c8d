"""xai_core.compare: classes matched by name across models, Spearman's ρ and top-k overlap against
closed-form values, and the models × methods grid with a method that refuses one model."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from xai_core import dataset
from xai_core.compare import (CONSTANT_MAP, ClassMatch, Comparison, average_ranks, compare_models, map_agreement,
                              match_classes, spearman, top_k_overlap)
from xai_core.errors import ParameterError
from xai_core.model_handle import LoadedModel


# ------------------------------------------------------------------------ classes
def test_classes_are_matched_by_name_case_insensitively_in_the_first_models_order():
    first = ["cat", "Dog", "bird", "fish"]
    second = ["FISH", "dog", "horse", "Cat"]
    assert match_classes([first, second]) == [ClassMatch("cat", (0, 3)), ClassMatch("Dog", (1, 1)),
                                              ClassMatch("fish", (3, 0))]


def test_models_with_no_class_in_common_cannot_be_compared():
    assert match_classes([["circle", "square"], ["tench", "goldfish"]]) == []


def test_a_name_a_model_has_twice_is_matched_by_position_only_where_that_is_unambiguous():
    imagenet_like = ["crane", "tench", "crane"]  # ImageNet names two classes "crane"
    assert match_classes([imagenet_like, list(imagenet_like)]) == [
        ClassMatch("crane", (0, 0)), ClassMatch("tench", (1, 1)), ClassMatch("crane", (2, 2))]
    # The second model has "crane" twice at other positions: which one is meant is unknown.
    assert match_classes([["crane", "tench"], ["tench", "crane", "crane"]]) == [ClassMatch("tench", (1, 0))]


# ---------------------------------------------------------------------- Spearman
def test_average_ranks_share_ties():
    np.testing.assert_array_equal(average_ranks(np.array([[10.0, 20.0], [20.0, 5.0]])), [2, 3.5, 3.5, 1])


def test_spearman_is_one_for_a_monotone_transform_and_minus_one_for_a_reversed_map():
    a = np.random.default_rng(0).normal(size=(16, 16))
    assert spearman(a, np.exp(3 * a) + 7) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)


def test_spearman_on_hand_built_pairs():
    # No ties: 1 − 6 Σd² / (n (n² − 1)) with d = (0, 1, 1, 0) → 1 − 12/60.
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 30, 20, 40])) == pytest.approx(0.8)
    # A tie: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4) → 4.5 / √(4.5 · 5) = 3/√10 (ordinal ranks would give 1).
    assert spearman(np.array([1.0, 2, 2, 3]), np.array([1.0, 2, 3, 4])) == pytest.approx(3 / math.sqrt(10))


def test_spearman_of_a_constant_map_is_undefined():
    assert math.isnan(spearman(np.zeros((4, 4)), np.arange(16.0).reshape(4, 4)))


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, size=(12, 12)).astype(float), rng.normal(size=(12, 12))
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a.ravel(), b.ravel()).statistic)


# ------------------------------------------------------------------ top-k overlap
def test_top_k_overlap_on_hand_built_maps():
    a, b = np.zeros((4, 4)), np.zeros((4, 4))
    a.flat[[0, 1, 2, 3]] = [9, 8, 7, 6]   # top 25 % (4 pixels): 0..3
    b.flat[[2, 3, 4, 5]] = [5, 5, 5, 5]   # top 25 %: 2..5
    assert top_k_overlap(a, b, 25) == pytest.approx(2 / 6)
    assert top_k_overlap(a, a, 25) == 1.0
    assert top_k_overlap(a, -a, 10) == 0.0  # the 2 highest of −a are among its zeros, never 0..3
    assert top_k_overlap(a, b, 100) == 1.0
    with pytest.raises(ParameterError):
        top_k_overlap(a, b, 0)


def test_maps_of_different_sizes_are_compared_at_the_smaller_one():
    small = np.arange(16.0).reshape(4, 4)
    large = np.kron(small, np.ones((2, 2)))  # the same map, twice the size
    rho, overlap = map_agreement(small, large, 25)
    assert rho == pytest.approx(1.0) and overlap == 1.0


# ------------------------------------------------------------------------- grid
@pytest.fixture(scope="module")
def fully_connected_head() -> LoadedModel:
    """A VGG-like net on 64 px: conv, max-pooling, a fully connected head (CAM refuses it), classes reversed."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(8), nn.Flatten(),
                           nn.Linear(4 * 8 * 8, len(dataset.CLASSES)))
    return LoadedModel.from_module(module, input_size=64, categories=list(reversed(dataset.CLASSES)), name="fc_head")


def test_the_grid_has_every_map_and_the_reason_of_a_refusal(embedded, fully_connected_head, dataset_input):
    models = [embedded, fully_connected_head]
    match = next(m for m in match_classes([m.categories for m in models]) if m.name == dataset.CLASSES[1])
    assert match.indices == (1, len(dataset.CLASSES) - 2)  # the same class at two different indices
    comparison = compare_models(models, [dataset_input] * 2, match, {"saliency": {}, "cam": {}})
    assert comparison.targets == [1, len(dataset.CLASSES) - 2]
    assert all(cell is not None for cell in [*comparison.maps[0], comparison.maps[1][0]])
    assert comparison.maps[1][1] is None and "CAM is defined only" in comparison.refusals[(1, 1)]
    saliency, cam = comparison.agreement(10)
    assert (saliency.first, saliency.second, saliency.note) == (0, 1, "")
    assert -1 <= saliency.spearman <= 1 and 0 <= saliency.overlap <= 1
    assert cam.note == comparison.refusals[(1, 1)] and math.isnan(cam.spearman)


def test_the_same_model_twice_agrees_perfectly_and_each_cell_asks_for_its_models_class(embedded, dataset_input):
    calls = []

    def maps(position, method, target, params):
        calls.append((position, method, target, dict(params)))
        return dataset_input[0].numpy() * (1 + target)

    match = ClassMatch("triangle", (2, 5))
    comparison = compare_models([embedded, embedded], [dataset_input] * 2, match, {"rise": {"masks": 8}},
                                maps=maps)
    assert calls == [(0, "rise", 2, {"masks": 8}), (1, "rise", 5, {"masks": 8})]
    (row,) = comparison.agreement(5)
    assert row.spearman == pytest.approx(1.0) and row.overlap == 1.0  # one map is 2× the other: same ranks


def test_a_constant_map_gets_a_note_instead_of_a_correlation():
    comparison = Comparison("circle", [0, 0], ["gradcam"], [[np.zeros((4, 4))], [np.arange(16.0).reshape(4, 4)]])
    (row,) = comparison.agreement(25)
    assert math.isnan(row.spearman) and row.note == CONSTANT_MAP
