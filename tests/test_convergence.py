"""Early stopping of the sampling methods (RISE, SmoothGrad) and refinement of IG's steps.

Every claim is checked against the fixed-count computation: a stopped map is a fixed run with the
count used, the correlations and gaps reported are the ones of those fixed runs, tolerance 0 is
the fixed run, and a batch stops image by image exactly as its images alone.
"""
import numpy as np
import pytest
import torch

from torch import nn

from xai_core import dataset
from xai_core.engine import Engine
from xai_core.methods import explain, explain_batch
from xai_core.methods.integrated_gradients import _reuse, quadrature
from xai_core.methods.convergence import doubling_rounds, map_correlation
from xai_core.methods.rise import rise_progressive, saliency_from_sums, stopping_count
from xai_core.model_handle import LoadedModel

TARGETS = [0, 3]
COUNT = {"rise": "masks", "smoothgrad": "samples", "ig": "steps"}
SETTINGS = {"rise": {"masks": 800, "cell": 5, "tolerance": 0.2},
            "smoothgrad": {"samples": 80, "tolerance": 0.05},
            "ig": {"steps": 33, "rule": "riemann_trapezoid", "tolerance": 0.05}}


def engine() -> Engine:
    # One batch size dividing every round, so a round's batches are a fixed run's batches.
    return Engine("cpu", batch_size=10)


def run(model, x, method, **params):
    return explain(model, x, method, TARGETS, params, engine=engine())


def maps(explanations) -> np.ndarray:
    return np.stack([e.map for e in explanations])


def corr(a, b) -> np.ndarray:
    return map_correlation(torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))).numpy()


@pytest.fixture(scope="module")
def second_input(embedded) -> torch.Tensor:
    image = np.asarray(dataset.make_sample(11, 0).image)[None]
    return dataset.normalize(image, embedded.mean, embedded.std)[0]


@pytest.fixture(scope="module")
def small():
    """A small random CNN at 32 px with its input: RISE needs hundreds of forward passes per check."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                           nn.Linear(128, 10)).eval()
    with torch.no_grad():
        module[-1].weight *= 20  # a peaky softmax, so the masked probabilities vary
    model = LoadedModel.from_module(module, input_size=32, num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3)
    return model, torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(2))


def inputs(method, embedded, dataset_input, small):
    """(model, image) for a method: RISE on the small CNN, the gradient methods on the embedded model."""
    return small if method == "rise" else (embedded, dataset_input)


@pytest.mark.parametrize("method", ["rise", "smoothgrad"])
def test_a_stopped_map_is_the_fixed_run_with_the_count_used_and_its_correlations_are_those_runs(
        embedded, dataset_input, small, method):
    embedded, dataset_input = inputs(method, embedded, dataset_input, small)
    settings, count = SETTINGS[method], COUNT[method]
    stopped = run(embedded, dataset_input, method, **settings)
    used = int(stopped[0].extras[f"{count}_used"])
    rounds = stopped[0].extras[f"round_{count}"]
    assert rounds == doubling_rounds(rounds[0], settings[count]) and used in rounds
    assert used < settings[count]  # it did stop early on this image
    fixed = {n: maps(run(embedded, dataset_input, method, **settings | {"tolerance": 0.0, count: n}))
             for n in rounds if n <= used}
    np.testing.assert_array_equal(maps(stopped), fixed[used])
    # The reported correlations are those of consecutive fixed runs (worst target), and the rule
    # held at the round it stopped and the one before, and never twice in a row before.
    reported = stopped[0].extras["round_correlations"]
    expected = [corr(fixed[b], fixed[a]).min() for a, b in zip(rounds, rounds[1:]) if b <= used]
    np.testing.assert_allclose(reported[1:len(expected) + 1], expected, rtol=1e-6)
    assert np.isnan(reported[0]) and np.isnan(reported[len(expected) + 1:]).all()
    tolerance = settings["tolerance"]
    passed = [r >= 1 - tolerance for r in expected]
    assert passed[-2:] == [True, True] and not any(a and b for a, b in zip(passed[:-2], passed[1:-1]))
    # What the rule claims: the stopped map is within the tolerance of the full-length map.
    full = maps(run(embedded, dataset_input, method, **settings | {"tolerance": 0.0}))
    assert corr(maps(stopped), full).min() >= 1 - tolerance


@pytest.mark.parametrize("method", ["rise", "smoothgrad", "ig"])
def test_tolerance_zero_is_the_fixed_run_and_an_unmet_tolerance_runs_to_the_maximum(embedded, dataset_input,
                                                                                     small, method):
    embedded, dataset_input = inputs(method, embedded, dataset_input, small)
    settings, count = SETTINGS[method], COUNT[method]
    fixed = run(embedded, dataset_input, method, **settings | {"tolerance": 0.0})
    assert not any(k.endswith("_used") for k in fixed[0].extras)
    unmet = run(embedded, dataset_input, method, **settings | {"tolerance": 1e-12})
    assert int(unmet[0].extras[f"{count}_used"]) == settings[count]
    if method == "ig":  # the refined sum rescales old nodes: equal up to rounding
        np.testing.assert_allclose(maps(unmet), maps(fixed), rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(maps(unmet), maps(fixed))


def test_rise_tolerance_zero_is_bit_for_bit_the_accumulated_sums(small):
    embedded, dataset_input = small
    fixed = maps(run(embedded, dataset_input, "rise", masks=200, cell=5))
    *_, last = rise_progressive(embedded, dataset_input, TARGETS, masks=200, cell=5, p=0.5, shape="binary",
                                fill="black", seed=0, engine=engine())
    np.testing.assert_array_equal(fixed, saliency_from_sums(last.sums, 200, 0.5).numpy())


def test_the_stopping_count_read_off_stored_prefixes_is_the_runs(small):
    embedded, dataset_input = small
    settings = SETTINGS["rise"]
    used = int(run(embedded, dataset_input, "rise", **settings)[0].extras["masks_used"])
    steps = {s.n_done: s.sums.numpy() for s in rise_progressive(
        embedded, dataset_input, TARGETS, masks=settings["masks"], cell=5, p=0.5, shape="binary", fill="black",
        seed=0, engine=engine())}
    assert stopping_count(steps.__getitem__, settings["masks"], 0.5, settings["tolerance"]) == used


@pytest.mark.parametrize("rule", ["riemann_trapezoid", "gausslegendre"])
def test_ig_reaches_the_gap_asked_and_equals_the_fixed_run_with_the_steps_used(embedded, dataset_input, rule):
    tolerance, steps = 0.05, 40
    refined = run(embedded, dataset_input, "ig", steps=steps, rule=rule, tolerance=tolerance)
    used = int(refined[0].extras["steps_used"])
    fixed = run(embedded, dataset_input, "ig", steps=used, rule=rule)
    np.testing.assert_allclose(np.stack([e.attribution for e in refined]),
                               np.stack([e.attribution for e in fixed]), rtol=1e-4, atol=1e-6)
    rounds, gaps = refined[0].extras["round_steps"], np.stack([e.extras["round_gaps"] for e in refined])  # T×K
    stop = rounds.index(used)
    relative = [e.extras["completeness_gap"] / abs(e.extras["f_input"] - e.extras["f_baseline"]) for e in fixed]
    np.testing.assert_allclose(gaps[:, stop], relative, rtol=1e-3)
    assert used < steps and (gaps[:, stop] <= tolerance).all()
    assert all((gaps[:, k] > tolerance).any() for k in range(stop)) and np.isnan(gaps[:, stop + 1:]).all()


def test_nested_rules_reuse_every_old_node_and_gauss_legendre_restarts():
    new_nodes, factor = _reuse("riemann_trapezoid", 5, 9)
    positions = quadrature("riemann_trapezoid", 9)[0]
    np.testing.assert_allclose(positions[new_nodes].numpy(), [0.125, 0.375, 0.625, 0.875])
    assert factor == pytest.approx(0.5)
    new_nodes, factor = _reuse("riemann_middle", 2, 6)
    assert len(new_nodes) == 4 and factor == pytest.approx(1 / 3)
    assert _reuse("gausslegendre", 4, 8) is None
    assert _reuse("riemann_trapezoid", 17, 20) is None  # a capped last round off the chain restarts


@pytest.mark.parametrize("method", ["rise", "smoothgrad", "ig"])
def test_a_batch_stops_image_by_image_as_its_images_alone(embedded, dataset_input, second_input, small, method):
    settings, count = SETTINGS[method], COUNT[method]
    xs = torch.stack([dataset_input, second_input])
    if method == "rise":
        embedded, xs = small[0], torch.stack([small[1], torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(3))])
    batched = explain_batch(embedded, xs, method, [TARGETS, TARGETS], settings, engine=engine())
    for b, x in enumerate(xs):
        alone = run(embedded, x, method, **settings)
        assert batched[b][0].extras[f"{count}_used"] == alone[0].extras[f"{count}_used"]
        np.testing.assert_allclose(maps(batched[b]), maps(alone), rtol=1e-5, atol=1e-7)
