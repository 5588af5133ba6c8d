"""Saliency-guided fine-tuning (``xai_core.finetune``): the loss terms in closed form and against the
localisation metrics, the differentiable maps against the library's Grad-CAM and CAM, the direction
of MAGTR's gradient, gradient accumulation, and the shared model left untouched."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from xai_core import dataset
from xai_core.errors import ParameterError
from xai_core.finetune import FinetuneConfig, finetune, finetune_step, localisation_terms, saliency_loss
from xai_core.finetune.losses import DIVISION_EPS, combine_loss, saliency_maps
from xai_core.finetune.training import make_optimizer, set_train_mode, trainable_copy, trainable_names
from xai_core.engine import Engine
from xai_core.instrument.capture import hook_count
from xai_core.methods import explain_batch
from xai_core.metrics.base import GroundTruth
from xai_core.metrics.localisation import HAGTR, MAGTR, MANGTR
from xai_core.model_handle import LoadedModel
from xai_core.models import build_random

# Two 2×2 maps: N(first) = [[0, .25], [.5, 1]] with the top row as region; N(second) = [[1, 0], [0, 0]]
# with every pixel but the maximum as region.
MAPS = torch.tensor([[[0.0, 1.0], [2.0, 4.0]], [[4.0, 0.0], [0.0, 0.0]]])
MASKS = torch.tensor([[[True, True], [False, False]], [[False, True], [True, True]]])
HAND_TERMS = {"hagtr": [0.25, 0.0], "magtr": [0.125, 0.0], "mangtr": [0.75, 1.0]}
CE = torch.tensor([2.0, 1.0])
K = {"k1": 0.5, "k2": 2.0, "k3": 4.0}
HAND_LOSSES = {                                                    # per image, from HAND_TERMS, CE and K
    "ce": [2.0, 1.0],
    "ce_x_1m_hagtr": [2.0 * 0.75, 1.0],
    "ce_x_1m_magtr": [2.0 * 0.875, 1.0],
    "ce_div_magtr": [2.0 / (0.125 + DIVISION_EPS), 1.0 / DIVISION_EPS],
    "weighted": [0.5 * 2.0 + 2.0 * 0.875, 0.5 + 2.0],
    "weighted_mangtr": [0.5 * 2.0 + 2.0 * 0.875 + 4.0 * 0.75, 0.5 + 2.0 + 4.0],
}


class TinyNet(nn.Module):
    """12×12 RGB -> 3 logits: two conv/BN/ReLU blocks, GAP, linear head (CAM applies at ``features``)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def tiny_model() -> LoadedModel:
    torch.manual_seed(0)
    module = TinyNet()
    with torch.no_grad():                          # non-trivial BN statistics, so eval mode matters
        for bn in (module.features[1], module.features[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return LoadedModel.from_module(module, input_size=12, num_classes=3, default_layer="features")


def tiny_batch(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(n)
    x = torch.randn(n, 3, 12, 12, generator=generator)
    labels = torch.randint(0, 3, (n,), generator=generator)
    masks = torch.zeros(n, 12, 12, dtype=torch.bool)
    for i in range(n):                             # a 5×5 box at a different place in each image
        top, left = (3 * i) % 7, (5 * i) % 7
        masks[i, top:top + 5, left:left + 5] = True
    return x, labels, masks


# ---------------------------------------------------------------- closed form
def test_terms_match_the_hand_computed_case():
    terms = localisation_terms(MAPS, MASKS)
    for name, expected in HAND_TERMS.items():
        torch.testing.assert_close(terms[name], torch.tensor(expected), atol=1e-6, rtol=0)


@pytest.mark.parametrize("form", list(HAND_LOSSES))
def test_each_loss_form_matches_the_hand_computed_case(form):
    loss = combine_loss(form, CE, localisation_terms(MAPS, MASKS), **K)
    torch.testing.assert_close(loss, torch.tensor(HAND_LOSSES[form]), atol=1e-4, rtol=1e-6)


def test_smooth_hagtr_lies_between_the_mean_and_the_max_of_the_region():
    sharp = localisation_terms(MAPS, MASKS, temperature=1e-3)["hagtr"]
    flat = localisation_terms(MAPS, MASKS, temperature=1e6)["hagtr"]
    torch.testing.assert_close(sharp, torch.tensor(HAND_TERMS["hagtr"]), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat, torch.tensor(HAND_TERMS["magtr"]), atol=1e-6, rtol=0)


def test_terms_agree_with_the_localisation_metrics():
    generator = torch.Generator().manual_seed(3)
    maps = torch.randn(6, 16, 16, generator=generator) * 3
    masks = torch.rand(6, 16, 16, generator=generator) < 0.3
    terms = localisation_terms(maps, masks)
    truth = GroundTruth(masks=masks)
    for metric in (HAGTR, MAGTR, MANGTR):
        expected = metric.fn(maps, truth, None, region="mask").scores
        torch.testing.assert_close(terms[metric.name].double(), expected, atol=1e-6, rtol=0)


def test_impossible_requests_are_refused():
    with pytest.raises(ParameterError):
        localisation_terms(MAPS, torch.zeros_like(MASKS))
    with pytest.raises(ParameterError):
        combine_loss("ce_times_magtr", CE, localisation_terms(MAPS, MASKS))
    model = build_random("embedded_vgg", device="cpu")     # max-pool + dense head: no CAM
    x, labels, masks, _ = dataset.tensors(0, 2)
    with pytest.raises(ParameterError):
        saliency_loss(model.module, x, labels, masks, layer=model.default_layer, form="weighted", saliency="cam")


# --------------------------------------------------------- the maps themselves
@pytest.mark.parametrize("saliency, method", [("gradcam", "gradcam"), ("cam", "cam")])
def test_maps_equal_the_library_methods(embedded_random, saliency, method):
    x, labels, _, _ = dataset.tensors(0, 3)
    _, maps = saliency_maps(embedded_random.module, x, labels, layer=embedded_random.default_layer,
                            saliency=saliency)
    reference = explain_batch(embedded_random, x, method, [[int(label)] for label in labels])
    expected = torch.stack([torch.from_numpy(row[0].map) for row in reference])
    torch.testing.assert_close(maps.detach(), expected, atol=1e-5, rtol=1e-4)


def test_magtr_gradient_reaches_the_head_through_the_gradcam_weights():
    # On a GAP + linear head the activation does not depend on fc.weight: MAGTR reaches it only
    # through ∂y/∂A, which is in the graph only with create_graph=True.
    model = tiny_model()
    x, labels, masks = tiny_batch(4)
    module = copy.deepcopy(model.module)
    _, maps = saliency_maps(module, x, labels, layer="features")
    magtr = localisation_terms(maps, masks)["magtr"].mean()
    head, first_conv = torch.autograd.grad(magtr, [module.fc.weight, module.features[0].weight])
    assert head.abs().sum() > 0 and first_conv.abs().sum() > 0


def test_one_sgd_step_on_the_saliency_term_raises_magtr():
    model = tiny_model()
    x, labels, masks = tiny_batch(8)
    config = FinetuneConfig(layer="features", form="weighted", k1=0.0, k2=1.0, optimizer="sgd", lr=0.05,
                            micro_batch=8)
    module = trainable_copy(model, config, torch.device("cpu"))
    set_train_mode(module)
    before = finetune_step(module, make_optimizer(module, config), [(x, labels, masks)], config, Engine())
    _, after = saliency_loss(module, x, labels, masks, layer="features", form="weighted")
    assert float(after["magtr"]) > before["magtr"] + 1e-4


# --------------------------------------------------------------- accumulation
@pytest.mark.parametrize("form", ["weighted_mangtr", "ce_x_1m_hagtr"])
def test_accumulating_micro_batches_equals_one_large_batch(form):
    model = tiny_model()
    x, labels, masks = tiny_batch(6)
    updated = []
    for micro_batch, accumulate in [(6, 1), (2, 3)]:
        config = FinetuneConfig(layer="features", form=form, optimizer="sgd", lr=0.1, micro_batch=micro_batch,
                                accumulate=accumulate, k3=0.5)
        module = trainable_copy(model, config, torch.device("cpu"))
        set_train_mode(module)
        chunks = [tuple(t[i:i + micro_batch] for t in (x, labels, masks)) for i in range(0, 6, micro_batch)]
        finetune_step(module, make_optimizer(module, config), chunks, config, Engine())
        updated.append(module.state_dict())
    start = model.module.state_dict()
    assert any(not torch.equal(updated[0][k], start[k]) for k in start)       # the step did something
    for name in start:
        torch.testing.assert_close(updated[1][name], updated[0][name], atol=1e-6, rtol=0)


# ------------------------------------------------------------ the shared model
def test_a_run_leaves_the_shared_model_untouched_and_reports_each_epoch(embedded_random):
    shared = embedded_random.module
    before = {k: v.clone() for k, v in shared.state_dict().items()}
    flags = [p.requires_grad for p in shared.parameters()]
    x, labels, masks, _ = dataset.tensors(0, 8)
    config = FinetuneConfig(layer=embedded_random.default_layer, form="weighted_mangtr", lr=1e-3, micro_batch=2,
                            accumulate=2, trainable="head")
    seen = []
    result = finetune(embedded_random, (x, labels, masks), config, epochs=2, val=(x[:4], labels[:4], masks[:4]),
                      progress=lambda fraction, message: seen.append(fraction))
    assert [(r.epoch, r.split) for r in result.records] == [(0, "train"), (0, "val"), (1, "train"), (1, "val")]
    assert all(0 <= r.magtr <= 1 and r.ce > 0 for r in result.records)
    assert seen == [0.25, 0.5, 0.75, 1.0]
    tuned = result.module.state_dict()
    changed = {name for name in before if not torch.equal(tuned[name], before[name])}
    assert changed == {"fc.weight", "fc.bias"}                   # head only, BN statistics frozen
    for name, value in shared.state_dict().items():
        assert torch.equal(value, before[name])
    assert [p.requires_grad for p in shared.parameters()] == flags
    assert all(p.grad is None for p in shared.parameters())
    assert hook_count(shared) == 0 and not shared.training


def test_a_progress_callback_that_raises_stops_the_run_without_a_trace(embedded_random):
    def stop(fraction: float, message: str) -> None:
        raise KeyboardInterrupt

    x, labels, masks, _ = dataset.tensors(0, 4)
    config = FinetuneConfig(layer=embedded_random.default_layer, micro_batch=2)
    with pytest.raises(KeyboardInterrupt):
        finetune(embedded_random, (x, labels, masks), config, epochs=3, progress=stop)
    assert hook_count(embedded_random.module) == 0
    assert all(p.grad is None for p in embedded_random.module.parameters())


def test_trainable_choices_name_the_right_parameters():
    vit = build_random("embedded_vit", device="cpu").module
    names = trainable_names(vit, "last_block", "blocks.3.norm1")
    assert names[0].startswith("blocks.3.") and "head.weight" in names
    assert not any(name.startswith("blocks.2.") for name in names)
    assert trainable_names(TinyNet(), "head", "features") == ["fc.weight", "fc.bias"]
    assert trainable_names(TinyNet(), ("features.3",), "features") == ["features.3.weight", "features.3.bias"]
    with pytest.raises(ParameterError):
        trainable_names(TinyNet(), ("nothing",), "features")
    with pytest.raises(ParameterError):
        trainable_copy(tiny_model(), FinetuneConfig(layer="features.9"), torch.device("cpu"))
