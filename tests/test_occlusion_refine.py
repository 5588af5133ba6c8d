"""Coarse-to-fine occlusion: where it refined, the exhaustive map; elsewhere fewer forward passes."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xai_core.errors import ParameterError
from xai_core.methods import explain
from xai_core.methods.occlusion import OcclusionGrid, _kept_positions
from xai_core.model_handle import LoadedModel
from xai_core.models import build_random

PATCH = (slice(8, 20), slice(28, 40))  # rows, columns of a 48×48 input


class PatchNet(nn.Module):
    """A classifier whose logits depend only on the pixels of ``PATCH``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 12 * 12, 3)

    def forward(self, x):
        return 3 * self.head(F.relu(self.conv(x[:, :, PATCH[0], PATCH[1]])).flatten(1))


def both(model, x, targets, **params):
    exhaustive = explain(model, x, "occlusion", targets, {k: params[k] for k in ("window", "stride", "fill")})
    refined = explain(model, x, "occlusion", targets, dict(params, search="coarse_to_fine"))
    return exhaustive, refined


def assert_exhaustive_where_refined(exhaustive, refined, window, stride, size):
    grid = OcclusionGrid.of(size, size, window, stride)
    for full, part in zip(exhaustive, refined):
        done = part.extras["refined_grid"]
        assert done.shape == grid.shape and done.any() and not done.all()
        assert np.allclose(part.extras["probability_grid"][done], full.extras["probability_grid"][done],
                           rtol=0, atol=1e-6)
        assert np.array_equal(part.extras["top_class_grid"][done], full.extras["top_class_grid"][done])
        assert np.all(part.extras["top_class_grid"][~done] == -1)
        only_refined = grid.fold_sum(torch.from_numpy(~done).float()[None], size, size)[0].numpy() == 0
        assert only_refined.any()
        assert np.allclose(part.map[only_refined], full.map[only_refined], rtol=0, atol=1e-6)
        # the whole coarse lattice (every other position per side, and the last) is evaluated
        assert done[::2, ::2].all() and done[-1, ::2].all() and done[::2, -1].all()
        # forwards: the intact image and the evaluated positions, each once
        assert part.extras["forwards"] == 1 + done.sum() < part.extras["exhaustive_forwards"]
        assert part.extras["exhaustive_forwards"] == full.extras["forwards"] == 1 + grid.size


def test_the_fewest_positions_holding_the_mass_are_kept_for_every_target():
    drop = torch.tensor([[0.5, 0.25, 0.125, 0.125, -0.25],
                         [-0.25, 0.0, 0.0, 0.0, 1.0]])
    assert _kept_positions(drop[:1], 0.75).tolist() == [True, True, False, False, False]
    assert _kept_positions(drop[:1], 0.8).tolist() == [True, True, True, False, False]
    assert _kept_positions(drop, 0.75).tolist() == [True, True, False, False, True]
    assert _kept_positions(drop, 1.0).all()
    assert not _kept_positions(torch.full((1, 4), -0.1), 0.9).any()  # no drop anywhere: nothing to refine


def test_on_a_patch_model_it_refines_around_the_patch_and_equals_the_exhaustive_map_there():
    model = LoadedModel.from_module(PatchNet(), input_size=48, num_classes=3, default_layer="conv")
    torch.manual_seed(1)
    x = torch.randn(3, 48, 48)
    exhaustive, refined = both(model, x, [1], window=8, stride=4, fill="black", refine_mass=0.9)
    assert_exhaustive_where_refined(exhaustive, refined, 8, 4, 48)
    done, full = refined[0].extras["refined_grid"], exhaustive[0]
    peak = np.unravel_index(np.abs(full.extras["probability_grid"] - full.extras["base_probability"]).argmax(),
                            done.shape)
    assert done[peak]
    # no coarse occluder reaching rows ≥ 36 touches the patch: the estimate is the exhaustive 0 there
    assert np.abs(refined[0].map[36:, :20]).max() < 1e-7 and np.abs(full.map[36:, :20]).max() < 1e-7
    # occluders from row 32 on miss the patch: their coarse drops are 0, so row 9 (between the
    # coarse rows 8 and 10) is interpolated, not evaluated
    assert not done[9].any() and refined[0].extras["occluder_ys"][8] == 32


def test_on_a_random_cnn_it_equals_the_exhaustive_map_where_refined_for_several_targets():
    model = build_random("embedded", num_classes=10)
    torch.manual_seed(2)
    x = torch.randn(3, 64, 64)
    exhaustive, refined = both(model, x, [0, 7], window=8, stride=8, fill="grey", refine_mass=0.5)
    assert_exhaustive_where_refined(exhaustive, refined, 8, 8, 64)


@pytest.mark.parametrize("levels", [1, 2])
def test_refining_all_the_mass_is_the_exhaustive_map(levels):
    model = build_random("embedded", num_classes=10)
    torch.manual_seed(3)
    x = torch.randn(3, 64, 64)
    exhaustive, refined = both(model, x, [4, 2], window=8, stride=8, fill="noise", levels=levels, refine_mass=1.0)
    for full, part in zip(exhaustive, refined):
        assert part.extras["refined_grid"].all()
        assert np.allclose(part.map, full.map, rtol=0, atol=1e-6)
        assert np.allclose(part.extras["feature_activation_grid"], full.extras["feature_activation_grid"],
                           rtol=1e-5)


def test_impossible_settings_are_refused_with_the_reason():
    model = build_random("embedded", num_classes=10)
    x = torch.zeros(3, 64, 64)
    with pytest.raises(ParameterError, match="fewer levels or a smaller stride"):
        explain(model, x, "occlusion", [0], {"window": 16, "search": "coarse_to_fine", "levels": 3})
    with pytest.raises(ParameterError, match="refine_mass"):
        explain(model, x, "occlusion", [0], {"search": "coarse_to_fine", "refine_mass": 0.2})
    with pytest.raises(ParameterError, match="search"):
        explain(model, x, "occlusion", [0], {"search": "random"})
