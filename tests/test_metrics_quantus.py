"""Parity of ``xai_core.metrics`` with Quantus 0.6.0 on the same maps and masks (and with scipy and
scikit-image, which Quantus's similarity functions call): equal to 1e-6, or a stated difference of
convention, asserted here as well. Each difference is also described in the metric's module docstring.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

quantus = pytest.importorskip("quantus")
scipy_ndimage = pytest.importorskip("scipy.ndimage")
from quantus.functions.similarity_func import correlation_spearman as quantus_spearman  # noqa: E402
from quantus.functions.similarity_func import ssim as quantus_ssim  # noqa: E402

from xai_core import dataset  # noqa: E402
from xai_core.engine import Engine  # noqa: E402
from xai_core.methods import explain_batch  # noqa: E402
from xai_core.metrics import GroundTruth, MetricContext, compute  # noqa: E402
from xai_core.metrics.similarity import spearman, ssim  # noqa: E402
from xai_core.model_handle import LoadedModel  # noqa: E402
from xai_core.replacements import replacement_image  # noqa: E402

trapezoid = getattr(np, "trapezoid", None) or np.trapz  # renamed in numpy 2.0, np.trapz gone in 2.4
pytestmark = pytest.mark.filterwarnings("ignore")  # Quantus warns about its parameterisation on every call


def random_masks(n: int, side: int, seed: int) -> torch.Tensor:
    """Boxes and discs of random sizes, at random places."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    masks = np.zeros((n, side, side), dtype=bool)
    for i in range(n):
        cy, cx = rng.integers(side // 4, 3 * side // 4, size=2)
        r = int(rng.integers(3, side // 3))
        box = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        masks[i] = box if i % 2 else (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return torch.from_numpy(masks)


def quantus_scores(metric, maps: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """A Quantus localisation metric on maps B×H×W and masks B×H×W (float64, no model needed)."""
    x = np.zeros((len(maps), 3, *maps.shape[-2:]))
    return np.array(metric(model=None, x_batch=x, y_batch=np.zeros(len(maps), dtype=int),
                           a_batch=maps.numpy()[:, None].astype(np.float64), s_batch=masks.numpy()[:, None]),
                    dtype=np.float64)


def ours(name: str, maps: torch.Tensor, masks: torch.Tensor, **params) -> np.ndarray:
    return compute(name, maps, GroundTruth(masks=masks), params={"region": "mask", **params}).scores.numpy()


MAPS = torch.randn(16, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
MASKS = random_masks(16, 64, seed=1)


# ------------------------------------------------------------------ localisation
def test_relevance_mass_and_rank_accuracy_equal_quantus():
    np.testing.assert_allclose(ours("relevance_mass_accuracy", MAPS, MASKS),
                               quantus_scores(quantus.RelevanceMassAccuracy(disable_warnings=True), MAPS, MASKS),
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours("relevance_rank_accuracy", MAPS, MASKS),
                               quantus_scores(quantus.RelevanceRankAccuracy(disable_warnings=True), MAPS, MASKS),
                               rtol=0, atol=1e-6)


def test_energy_pointing_game_equals_quantus_attribution_localisation_on_positive_attributions():
    metric = quantus.AttributionLocalisation(positive_attributions=True, abs=False, disable_warnings=True)
    np.testing.assert_allclose(ours("energy_pointing_game", MAPS, MASKS), quantus_scores(metric, MAPS, MASKS),
                               rtol=0, atol=1e-6)


def test_pointing_game_equals_quantus_without_tolerance_and_on_the_dilated_mask_with_one():
    distance = np.stack([scipy_ndimage.distance_transform_edt(~m) for m in MASKS.numpy()])
    maps, rng = MAPS.clone(), np.random.default_rng(3)
    for i in range(len(maps)):  # put each maximum 0 to 7 px from its mask, where the tolerance decides
        ys, xs = np.nonzero(distance[i] < 7)
        pick = rng.integers(len(ys))
        maps[i, ys[pick], xs[pick]] = 10.0
    metric = quantus.PointingGame(disable_warnings=True)
    exact = ours("pointing_game", maps, MASKS, tolerance=0)
    np.testing.assert_array_equal(exact, quantus_scores(metric, maps, MASKS))
    dilated = torch.from_numpy(distance <= 15 * 64 / 224)
    tolerant = ours("pointing_game", maps, MASKS)
    np.testing.assert_array_equal(tolerant, quantus_scores(metric, maps, dilated))
    assert tolerant.sum() > exact.sum()   # the tolerance made a difference on these maps


def test_quantus_scores_an_empty_mask_and_a_constant_map_as_hits_where_we_give_nan():
    masks = MASKS[:2].clone()
    masks[0] = False
    maps = MAPS[:2].clone()
    maps[1] = 0.5
    np.testing.assert_array_equal(quantus_scores(quantus.PointingGame(disable_warnings=True), maps, masks), [1.0, 1.0])
    assert np.isnan(ours("pointing_game", maps, masks)).all()


# -------------------------------------------------------- deletion / insertion
@pytest.fixture(scope="module")
def crops(embedded):
    """Four embedded images cropped to 48 px: Quantus's features_in_step must divide H·W, and flipping
    whole pixels needs a multiple of C = 3, so H·W = 2304 with K = 12 steps of 192 pixels (576 values)."""
    samples = dataset.samples(1, 4)
    xs = dataset.normalize(np.stack([s.image for s in samples]), embedded.mean, embedded.std)[..., 8:56, 8:56]
    targets = torch.tensor([s.label for s in samples])
    maps = torch.rand(4, 48, 48, generator=torch.Generator().manual_seed(2))
    return xs.contiguous(), targets, maps


def copy_in(arr, indices, perturb_baseline, **kwargs):
    """A Quantus perturb_func: the flipped values come from ``perturb_baseline`` (B×features) at the same place."""
    out = arr.copy()
    rows = np.arange(len(arr))[:, None]
    out[rows, indices] = perturb_baseline[rows, indices]
    return out


def pixel_flipping(model, start: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, **settings) -> np.ndarray:
    metric = quantus.PixelFlipping(features_in_step=3 * maps[0].numel() // 12, normalise=False, abs=False,
                                   disable_warnings=True, **settings)
    return np.array(metric(model=model.module, x_batch=start.numpy(), y_batch=targets.numpy(),
                           a_batch=maps.numpy()[:, None], device="cpu"))


def test_deletion_equals_quantus_pixel_flipping_with_grey_and_with_blur(embedded, crops):
    xs, targets, maps = crops
    context = MetricContext(embedded, xs, targets, Engine("cpu"), "saliency")
    grey = compute("deletion", maps, context=context, params={"steps": 12, "replacement": "grey"}).curves
    np.testing.assert_allclose(grey[:, 1:].numpy(), pixel_flipping(embedded, xs, maps, targets, perturb_baseline=0.0),
                               rtol=0, atol=1e-6)
    blur = compute("deletion", maps, context=context, params={"steps": 12, "replacement": "blur"}).curves
    blurred = torch.stack([replacement_image(embedded, x, "blur") for x in xs])
    expected = pixel_flipping(embedded, xs, maps, targets, perturb_func=copy_in,
                              perturb_func_kwargs={"perturb_baseline": blurred.flatten(1).numpy()})
    np.testing.assert_allclose(blur[:, 1:].numpy(), expected, rtol=0, atol=1e-6)


def test_insertion_equals_quantus_pixel_flipping_started_from_the_blur(embedded, crops):
    xs, targets, maps = crops
    context = MetricContext(embedded, xs, targets, Engine("cpu"), "saliency")
    out = compute("insertion", maps, context=context, params={"steps": 12})
    blurred = torch.stack([replacement_image(embedded, x, "blur") for x in xs])
    expected = pixel_flipping(embedded, blurred, maps, targets, perturb_func=copy_in,
                              perturb_func_kwargs={"perturb_baseline": xs.flatten(1).numpy()})
    np.testing.assert_allclose(out.curves[:, 1:].numpy(), expected, rtol=0, atol=1e-6)
    # AUC: Quantus integrates c_1..c_K with dx = 1 (np.trapz); ours integrates c_0..c_K over [0, 1]
    curves = out.curves.numpy()
    np.testing.assert_allclose(12 * out.scores.numpy(),
                               trapezoid(expected, dx=1, axis=1) + (curves[:, 0] + curves[:, 1]) / 2, atol=1e-6)
    if not hasattr(np, "trapz"):  # numpy ≥ 2.4 removed np.trapz, which Quantus's calculate_auc calls
        with pytest.raises(AttributeError, match="trapz"):
            quantus.helpers.utils.calculate_auc(expected, batched=True)


def test_deletion_with_one_pixel_steps_equals_quantus_region_perturbation_with_one_pixel_patches(linear_model):
    model, _ = linear_model
    generator = torch.Generator().manual_seed(1)
    xs, maps = torch.randn(3, 3, 8, 8, generator=generator), torch.rand(3, 8, 8, generator=generator)
    targets = torch.tensor([0, 1, 3])
    curves = compute("deletion", maps, context=MetricContext(model, xs, targets, Engine("cpu"), "saliency"),
                     params={"steps": 64, "replacement": "grey"}).curves.numpy()
    metric = quantus.RegionPerturbation(patch_size=1, regions_evaluation=64, perturb_baseline=0.0, normalise=False,
                                        abs=False, disable_warnings=True)
    drops = np.array(metric(model=model.module, x_batch=xs.numpy(), y_batch=targets.numpy(),
                            a_batch=maps.numpy()[:, None], device="cpu"))
    np.testing.assert_allclose(drops, curves[:, :1] - curves[:, 1:], rtol=0, atol=1e-6)


# ------------------------------------------------------------------ sanity check
def quantus_explain_func(loaded: LoadedModel, method: str):
    """A Quantus explain_func running our method on whatever (randomised) module Quantus hands it."""
    def explain_func(model, inputs, targets, **kwargs):
        handle = LoadedModel.from_module(model, input_size=inputs.shape[-1], categories=loaded.categories,
                                         mean=loaded.mean, std=loaded.std, default_layer=loaded.default_layer)
        results = explain_batch(handle, torch.as_tensor(inputs), method, [[int(t)] for t in targets])
        return np.stack([r[0].map for r in results])[:, None].astype(np.float64)
    return explain_func


def test_cascading_randomisation_equals_quantus_mprt(embedded, crops):
    xs, targets = crops[0][:2], crops[1][:2]
    explain_func = quantus_explain_func(embedded, "saliency")
    maps = torch.from_numpy(explain_func(embedded.module, xs.numpy(), targets.numpy())[:, 0])
    context = MetricContext(embedded, xs, targets, Engine("cpu"), "saliency")
    out = compute("cascading_randomisation", maps, context=context)
    # Spearman ignores Quantus's batch-wide normalisation: the same batch gives the same maps
    mprt = quantus.MPRT(disable_warnings=True)
    scores = mprt(model=embedded.module, x_batch=xs.numpy(), y_batch=targets.numpy(), a_batch=None,
                  explain_func=explain_func, batch_size=len(xs), device="cpu")
    assert list(scores) == ["original", *out.curve_x]
    np.testing.assert_allclose(out.curves.numpy(), np.array([scores[name] for name in out.curve_x]).T,
                               rtol=0, atol=1e-6)
    # SSIM: Quantus's MPRT flattens the maps (a 1-D SSIM), and fails with its own batched ssim, which returns a
    # list where MPRT calls .tolist(). Given 2-D maps and a batch of one (so that its normalisation is per map,
    # as ours), its ssim is our SSIM.
    with pytest.raises(AttributeError, match="tolist"):
        quantus.MPRT(similarity_func=quantus_ssim, disable_warnings=True)(
            model=embedded.module, x_batch=xs.numpy(), y_batch=targets.numpy(), a_batch=None,
            explain_func=explain_func, batch_size=len(xs), device="cpu")

    def ssim_2d(a, b, batched=True, **kwargs):
        return np.array([quantus_ssim(x.reshape(48, 48), y.reshape(48, 48)) for x, y in zip(a, b)])

    mprt = quantus.MPRT(similarity_func=ssim_2d, disable_warnings=True)
    scores = mprt(model=embedded.module, x_batch=xs.numpy(), y_batch=targets.numpy(), a_batch=None,
                  explain_func=explain_func, batch_size=1, device="cpu")
    np.testing.assert_allclose(out.extras["ssim"].numpy(), np.array([scores[name] for name in out.curve_x]).T,
                               rtol=0, atol=1e-6)


def test_similarities_equal_quantus_scipy_and_scikit_image():
    generator = torch.Generator().manual_seed(5)
    a = torch.rand(6, 20, 24, generator=generator, dtype=torch.float64)
    b = a + 0.3 * torch.rand(6, 20, 24, generator=generator, dtype=torch.float64)
    tied_a, tied_b = (a * 4).floor(), (b * 3).floor()   # few distinct values: ties everywhere
    for x, y in ((a, b), (tied_a, tied_b)):
        np.testing.assert_allclose(spearman(x, y).numpy(), quantus_spearman(x.flatten(1).numpy(), y.flatten(1).numpy(),
                                                                            batched=True), rtol=0, atol=1e-10)
        np.testing.assert_allclose(ssim(x, y).numpy(), [quantus_ssim(p, q) for p, q in zip(x.numpy(), y.numpy())],
                                   rtol=0, atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(spearman(torch.zeros(1, 8, 8), a[:1, :8, :8]).item())
