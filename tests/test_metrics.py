"""Metrics on hand-built maps, boxes, masks and models whose answers are known in closed form.

Parity with Quantus, scipy and scikit-image is in ``test_metrics_quantus.py``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from xai_core.engine import Engine
from xai_core.errors import ParameterError
from xai_core.methods import explain_batch
from xai_core.metrics import METRICS, GroundTruth, MetricContext, compute, list_metrics
from xai_core.metrics.similarity import average_ranks, spearman, ssim
from xai_core.model_handle import LoadedModel

trapezoid = getattr(np, "trapezoid", None) or np.trapz  # renamed in numpy 2.0, np.trapz gone in 2.4
RAMP = torch.arange(64, dtype=torch.float64).view(1, 8, 8)   # pixel (y, x) holds 8y + x
BOX = torch.tensor([[2, 1, 5, 4]])                             # x 2..4, y 1..3: values 8y + x, mean 19, max 28


def box_mask(box: list[int], side: int = 8) -> torch.Tensor:
    mask = torch.zeros(1, side, side, dtype=torch.bool)
    x0, y0, x1, y1 = box
    mask[0, y0:y1, x0:x1] = True
    return mask


def score(name: str, maps: torch.Tensor, truth: GroundTruth, **params) -> list[float]:
    return compute(name, maps, truth, params=params).scores.tolist()


# ------------------------------------------------------------ the report's three
@pytest.mark.parametrize("region", ["box", "mask"])
def test_hagtr_magtr_mangtr_on_a_ramp(region):
    truth = GroundTruth(boxes=BOX, masks=box_mask([2, 1, 5, 4]))
    inside_sum, total = 9 * 19, 63 * 64 / 2
    for maps in (RAMP, 5 * RAMP - 3):  # min-max normalisation: any affine rescaling scores the same
        assert score("hagtr", maps, truth, region=region) == pytest.approx([28 / 63])
        assert score("magtr", maps, truth, region=region) == pytest.approx([19 / 63])
        assert score("mangtr", maps, truth, region=region) == pytest.approx([(total - inside_sum) / 55 / 63])


def test_localisation_is_nan_where_undefined():
    maps = torch.cat([RAMP, RAMP, torch.full((1, 8, 8), 0.3)])
    boxes = torch.tensor([[3, 3, 3, 6], [0, 0, 8, 8], [0, 0, 4, 4]])   # empty box, whole image, constant map
    truth = GroundTruth(boxes=boxes)
    for name in ("hagtr", "magtr", "pointing_game", "energy_pointing_game", "relevance_mass_accuracy",
                 "relevance_rank_accuracy"):
        scores = score(name, maps, truth)
        assert math.isnan(scores[0]) and not math.isnan(scores[1]) and math.isnan(scores[2]), name
    assert [math.isnan(s) for s in score("mangtr", maps, truth)] == [False, True, True]


def test_boxes_are_clipped_to_the_image():
    corner = GroundTruth(boxes=torch.tensor([[6, 6, 20, 20]]))      # only pixels 54, 55, 62, 63 are in the image
    assert score("magtr", RAMP, corner) == pytest.approx([(54 + 55 + 62 + 63) / 4 / 63])


# -------------------------------------------------------------- pointing games
def peak(side: int, y: int, x: int) -> torch.Tensor:
    maps = torch.zeros(1, side, side)
    maps[0, y, x] = 1
    return maps


def test_pointing_game_tolerance_is_euclidean_and_scaled_with_the_side():
    # the peak at (0, 0) is 3 px right of and 4 px above the box corner: 5 px away (4 px as a Chebyshev distance)
    maps, truth = peak(64, 0, 0), GroundTruth(boxes=torch.tensor([[3, 4, 10, 10]]))
    assert score("pointing_game", maps, truth, tolerance=5, scale_tolerance=False) == [1.0]
    assert score("pointing_game", maps, truth, tolerance=4.9, scale_tolerance=False) == [0.0]
    # scaled: 15 px at 224 px is 4.29 px at 64 px; 17.5 px at 224 px is 5 px
    assert score("pointing_game", maps, truth) == [0.0]
    assert score("pointing_game", maps, truth, tolerance=17.5) == [1.0]
    big, far = peak(224, 100, 100), GroundTruth(boxes=torch.tensor([[115, 0, 224, 224]]))
    assert score("pointing_game", big, far) == [1.0]                          # 15 px away
    assert score("pointing_game", peak(224, 100, 99), far) == [0.0]           # 16 px away
    assert score("pointing_game", big, far, tolerance=0) == [0.0]


def test_pointing_game_on_a_mask_counts_any_tied_maximum():
    ring = torch.zeros(1, 16, 16, dtype=torch.bool)
    ring[0, 10, 10] = True
    maps = torch.zeros(1, 16, 16)
    maps[0, 2, 2] = maps[0, 10, 12] = 1.0            # two maxima: one 2 px from the mask pixel, one far
    truth = GroundTruth(masks=ring)
    assert score("pointing_game", maps, truth, region="mask", tolerance=2, scale_tolerance=False) == [1.0]
    assert score("pointing_game", maps, truth, region="mask", tolerance=1.5, scale_tolerance=False) == [0.0]


def test_energy_pointing_game_keeps_positive_mass_and_relevance_mass_the_sign():
    maps = torch.zeros(1, 8, 8)
    maps[0, 1, 2], maps[0, 2, 3] = 2.0, 1.0          # 3 inside the box
    maps[0, 7, 7], maps[0, 7, 0] = 1.0, -10.0         # 1 positive and 10 negative outside
    truth = GroundTruth(boxes=BOX)
    assert score("energy_pointing_game", maps, truth) == pytest.approx([3 / 4])
    assert score("relevance_mass_accuracy", maps, truth) == pytest.approx([3 / (3 + 1 - 10)])


def test_relevance_rank_accuracy_counts_the_top_k_in_the_region():
    maps = torch.zeros(1, 8, 8)
    maps[0, 0:2, 0:2] = torch.tensor([[4.0, 3.0], [2.0, 1.0]])   # a 2×2 box at the corner
    maps[0, 5, 5] = 3.5                                # the second highest is outside: 3 of the top 4 inside
    truth = GroundTruth(boxes=torch.tensor([[0, 0, 2, 2]]))
    assert score("relevance_rank_accuracy", maps, truth) == pytest.approx([3 / 4])
    maps[0, 5, 5] = 0.5                                # now the top 4 are the box
    assert score("relevance_rank_accuracy", maps, truth) == pytest.approx([1.0])
    # ties are ranked in raster order: the top 16 of a single peak are the peak and the first 15 zeros,
    # rows 0 and 1 (but its last pixel), 8 of them in the 4×4 box
    assert score("relevance_rank_accuracy", peak(8, 7, 7), GroundTruth(boxes=torch.tensor([[0, 0, 4, 4]]))) == [0.5]


def test_relevance_rank_accuracy_equals_a_stable_sort_on_maps_full_of_ties():
    generator = torch.Generator().manual_seed(6)
    maps = torch.randint(0, 4, (32, 12, 12), generator=generator).double()
    corners = torch.randint(0, 6, (32, 2), generator=generator)
    boxes = torch.cat([corners, corners + torch.randint(1, 7, (32, 2), generator=generator)], dim=1)
    truth = GroundTruth(boxes=boxes)
    expected = []
    for map_, (x0, y0, x1, y1) in zip(maps.numpy(), boxes.tolist()):
        region = np.zeros((12, 12), dtype=bool)
        region[y0:y1, x0:x1] = True
        k = region.sum()
        expected.append(region.ravel()[np.argsort(-map_.ravel(), kind="stable")[:k]].sum() / k)
    assert score("relevance_rank_accuracy", maps, truth) == pytest.approx(expected)


def test_localisation_is_per_map_in_a_batch():
    maps = torch.stack([peak(8, 2, 3)[0], peak(8, 7, 7)[0]])
    truth = GroundTruth(boxes=torch.cat([BOX, BOX]))
    assert score("pointing_game", maps, truth, tolerance=0) == [1.0, 0.0]
    assert score("hagtr", maps, truth) == [1.0, 0.0]


# -------------------------------------------------------- deletion / insertion
class FirstChannelLinear(nn.Module):
    """Two logits: Σ w · x[0] over the first channel, and 0; so p(class 0) = sigmoid(Σ w · x[0])."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x[:, 0] * self.weight).sum(dim=(-2, -1))
        return torch.stack([score, torch.zeros_like(score)], dim=1)


@pytest.fixture(scope="module")
def linear_probe():
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(8, 8, generator=generator) * 0.3
    model = LoadedModel.from_module(FirstChannelLinear(weight), input_size=8, num_classes=2, mean=(0.5,) * 3,
                                    std=(0.25,) * 3, default_layer="")
    xs = torch.randn(2, 3, 8, 8, generator=generator)
    maps = torch.randn(2, 8, 8, generator=generator)
    return model, weight, xs, maps


def expected_curve(weight, x0, map_, fill0, steps, insertion):
    """Closed form: the first n_k pixels by saliency come from the 'end' image, the rest from the 'start'."""
    order = np.argsort(-map_.numpy().ravel(), kind="stable")
    start, end = (fill0, x0) if insertion else (x0, fill0)
    curve = []
    for k in range(steps + 1):
        taken = np.zeros(64, dtype=bool)
        taken[order[: k * 64 // steps]] = True
        image = np.where(taken, end.numpy().ravel(), start.numpy().ravel())
        curve.append(1 / (1 + math.exp(-(image * weight.numpy().ravel()).sum())))
    return np.array(curve)


@pytest.mark.parametrize("metric, replacement, fill", [("deletion", "black", -2.0), ("insertion", "grey", 0.0),
                                                        ("deletion", "constant", 0.0)])
def test_deletion_and_insertion_curves_in_closed_form(linear_probe, metric, replacement, fill):
    model, weight, xs, maps = linear_probe
    steps = 4
    params = {"steps": steps, "replacement": replacement}
    if replacement == "constant":
        params["constant"] = 0.5                       # grey level 0.5 = the mean: normalised 0
    context = MetricContext(model, xs, torch.zeros(2, dtype=torch.long), Engine("cpu"), "saliency")
    out = compute(metric, maps, context=context, params=params)
    assert out.curve_x == [0, 0.25, 0.5, 0.75, 1.0]
    for b in range(2):
        curve = expected_curve(weight, xs[b, 0], maps[b], torch.full((8, 8), fill), steps, metric == "insertion")
        assert out.curves[b].numpy() == pytest.approx(curve, abs=1e-6)
        assert out.scores[b].item() == pytest.approx(trapezoid(curve, np.linspace(0, 1, steps + 1)), abs=1e-6)


def test_deletion_is_the_same_whatever_the_engine_batch(embedded, dataset_input):
    xs = torch.stack([dataset_input, dataset_input.flip(-1), dataset_input.flip(-2)])
    maps = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 3, 5])
    outs = [compute("insertion", maps, context=MetricContext(embedded, xs, targets, Engine("cpu", batch_size=size),
                                                             "saliency"), params={"steps": 8}).curves
            for size in (None, 5)]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-6)


# ------------------------------------------------------------------ sanity check
def test_cascading_randomisation_of_a_linear_model_in_closed_form(linear_model):
    model, weight = linear_model
    xs = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    targets = torch.tensor([1, 2])
    maps = torch.from_numpy(np.stack([e[0].map for e in explain_batch(model, xs, "saliency", [[1], [2]])]))
    state, rng = {k: v.clone() for k, v in model.module.state_dict().items()}, torch.random.get_rng_state()
    context = MetricContext(model, xs, targets, Engine("cpu"), "saliency")
    out = compute("cascading_randomisation", maps, context=context, params={"seed": 7})
    # the one layer re-initialised as torch.manual_seed(7 + 1); Linear.reset_parameters()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(8)
        fresh = nn.Linear(3 * 8 * 8, 4)
    randomised = fresh.weight.detach().view(4, 3, 8, 8).abs().amax(dim=1)[targets]   # saliency: max |∂y/∂x|
    assert out.curve_x == ["1"]
    torch.testing.assert_close(out.curves[:, 0], spearman(maps, randomised))
    torch.testing.assert_close(out.scores, out.curves[:, -1])
    torch.testing.assert_close(out.extras["ssim"][:, 0], ssim(maps / maps.amax((1, 2), keepdim=True),
                                                              randomised / randomised.amax((1, 2), keepdim=True)))
    assert all(torch.equal(v, state[k]) for k, v in model.module.state_dict().items())   # shared model untouched
    assert torch.equal(torch.random.get_rng_state(), rng)                               # global RNG untouched


def test_cascading_randomisation_goes_top_down_and_can_stop_early(embedded, dataset_input):
    xs = dataset_input.unsqueeze(0)
    maps = torch.from_numpy(explain_batch(embedded, xs, "gradcam", [[2]])[0][0].map).unsqueeze(0)
    context = MetricContext(embedded, xs, torch.tensor([2]), Engine("cpu"), "gradcam")
    full = compute("cascading_randomisation", maps, context=context)
    assert full.curve_x == ["fc", "features.block4.1", "features.block4.0", "features.block3.1", "features.block3.0",
                            "features.block2.1", "features.block2.0", "features.block1.1", "features.block1.0"]
    top = compute("cascading_randomisation", maps, context=context, params={"layers": 3, "similarity": "ssim"})
    assert top.curve_x == full.curve_x[:3]
    torch.testing.assert_close(top.curves, full.extras["ssim"][:, :3])   # cascading: same first layers, same maps


# ------------------------------------------------------------ similarity functions
def test_spearman_is_one_for_monotone_maps_and_averages_ties():
    a = torch.rand(2, 9, 9, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(spearman(a, a.exp() * 3), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(spearman(a, -a), -torch.ones(2, dtype=torch.float64))
    ranks = average_ranks(torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 1.0]]))
    torch.testing.assert_close(ranks, torch.tensor([[4.0, 1.0, 4.0, 2.0, 4.0], [2.5, 2.5, 2.5, 2.5, 5.0]],
                                                   dtype=torch.float64))
    assert math.isnan(spearman(torch.zeros(1, 8, 8), a[:1, :8, :8]).item())


def test_ssim_of_a_map_with_itself_is_one_and_falls_with_noise():
    a = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert ssim(a, a).item() == pytest.approx(1.0)
    noisy = a + 0.5 * torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert ssim(a, noisy).item() < 0.9


# --------------------------------------------------------------- registry, errors
def test_every_metric_declares_its_facts():
    assert set(METRICS) == {m.name for m in list_metrics()}
    for metric in METRICS.values():
        assert metric.label and metric.description and metric.reference and metric.fn.__doc__, metric.name
        assert all(p.help for p in metric.params.values()), metric.name


def test_errors_a_user_can_cause_are_parameter_errors():
    truth = GroundTruth(boxes=BOX)
    with pytest.raises(ParameterError, match="no parameter tolerence"):
        compute("pointing_game", RAMP, truth, params={"tolerence": 3})
    with pytest.raises(ParameterError, match="needs object masks"):
        compute("magtr", RAMP, truth, params={"region": "mask"})
    with pytest.raises(ParameterError, match="needs the model"):
        compute("deletion", RAMP, truth)
    with pytest.raises(ParameterError, match="B×H×W"):
        compute("hagtr", RAMP[0], truth)
    with pytest.raises(ParameterError, match="masks of 8×8"):
        compute("hagtr", RAMP, GroundTruth(masks=torch.ones(1, 4, 4, dtype=torch.bool)), params={"region": "mask"})
    with pytest.raises(ParameterError, match="Unknown metric"):
        compute("hagtr2", RAMP, truth)
