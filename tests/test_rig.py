"""RIG: the paper's target rule, the training split, support-network training and storage, the region
rule, occlusion, and the same pair on two architectures (the command line is tested end to end in
tests/test_cli.py)."""
import numpy as np
import pytest
import torch

from xai_core import dataset, rig
from xai_core.embedded import EmbeddedNet
from xai_core.embedded_resnet import EmbeddedResNet
from xai_core.engine import Engine
from xai_core.errors import ParameterError
from xai_core.model_handle import LoadedModel
from xai_core.rig import training

PAIR = dataset.PART_PAIR


def _tiny(name: str, arch: str, module: torch.nn.Module, categories=dataset.CLASSES) -> LoadedModel:
    """A randomly initialised embedded-dataset model (narrow: fast)."""
    return LoadedModel(name=name, arch=arch, module=module.eval(), categories=list(categories),
                       mean=dataset.MEAN, std=dataset.STD, input_size=dataset.IMAGE_SIZE,
                       resize_size=dataset.IMAGE_SIZE, weights_source="random", default_layer="features.block4",
                       device=torch.device("cpu"))


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    """The embedded architecture, narrow and randomly initialised: fast, with BatchNorm like the real one."""
    torch.manual_seed(0)
    return _tiny("tiny", "embedded", EmbeddedNet(len(dataset.CLASSES), width=4))


@pytest.fixture(scope="module")
def resnet() -> LoadedModel:
    """A second architecture on the same classes: the residual one, narrow."""
    torch.manual_seed(1)
    return _tiny("tiny_resnet", "embedded_resnet", EmbeddedResNet(len(dataset.CLASSES), width=4))


@pytest.fixture(scope="module")
def data(model) -> rig.TrainingData:
    return rig.embedded_data(model, PAIR, seed=0, n=24)


@pytest.fixture(scope="module")
def supports(model, data, tmp_path_factory) -> rig.SupportNetworks:
    return rig.train_support_networks(model, data, (0, 2, 8), lr=1e-2, epochs=3, batch_size=8,
                                      cache_dir=tmp_path_factory.mktemp("rig"))


def test_targets_follow_the_papers_rule():
    a, b = 1, 3
    logits = torch.arange(20, dtype=torch.float32).view(4, 5)
    labels = torch.tensor([a, b, 0, a])
    targets = rig.modified_targets(logits, labels, (a, b), alpha=2.5)
    expected = logits.clone()
    expected[0, b] -= 2.5  # an image of A: less B
    expected[3, b] -= 2.5
    expected[1, a] -= 2.5  # an image of B: less A
    torch.testing.assert_close(targets, expected, rtol=0, atol=0)
    torch.testing.assert_close(logits, torch.arange(20, dtype=torch.float32).view(4, 5))  # input untouched


def test_support_networks_reduce_their_mse(model, data, supports):
    engine = Engine(model.device)
    logits = rig.batched_logits(model.module, data.images, engine)
    assert [name for name, _ in supports.modules(model)] == ["classifier", "α=2", "α=8"]
    for alpha in (2.0, 8.0):
        targets = rig.modified_targets(logits, data.labels, data.classes, alpha)
        # One logit of each image is off by α before training: MSE = α² / number of classes.
        assert supports.curves[alpha][0] == pytest.approx(alpha ** 2 / model.num_classes, rel=1e-5)
        after = float(torch.nn.functional.mse_loss(rig.batched_logits(supports.networks[alpha], data.images,
                                                                      engine), targets))
        assert after < 0.9 * supports.curves[alpha][0]
    # The classifier itself is never modified by training its copies.
    torch.testing.assert_close(rig.batched_logits(model.module, data.images, engine), logits)


def test_batched_training_matches_sequential_training(model, data, tmp_path):
    kwargs = dict(lr=1e-3, epochs=2, batch_size=8)
    batched = rig.train_support_networks(model, data, (4,), mode="batched", cache_dir=tmp_path / "b", **kwargs)
    sequential = rig.train_support_networks(model, data, (4,), mode="sequential", cache_dir=tmp_path / "s", **kwargs)
    np.testing.assert_allclose(batched.curves[4.0], sequential.curves[4.0], rtol=1e-4)
    for (name, p), q in zip(batched.networks[4.0].named_parameters(), sequential.networks[4.0].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5, msg=name)


def test_second_request_loads_stored_networks_without_training(model, data, supports, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training ran although the networks were stored")

    monkeypatch.setattr(training, "_fit_batched", no_training)
    monkeypatch.setattr(training, "_fit_sequential", no_training)
    again = rig.train_support_networks(model, data, (0, 2, 8), lr=1e-2, epochs=3, batch_size=8,
                                       cache_dir=supports.directory.parent)
    assert again.loaded_from_disk and again.key == supports.key
    assert again.curves.keys() == supports.curves.keys()
    for alpha, curve in supports.curves.items():  # read back from JSON: equal up to float formatting
        assert again.curves[alpha] == pytest.approx(curve, rel=1e-12)
    for alpha in (2.0, 8.0):
        for p, q in zip(again.networks[alpha].state_dict().values(), supports.networks[alpha].state_dict().values()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    # Another setting is another key: it would train.
    with pytest.raises(AssertionError, match="training ran"):
        rig.train_support_networks(model, data, (0, 2, 8), lr=2e-2, epochs=3, batch_size=8,
                                   cache_dir=supports.directory.parent)


def test_important_regions_rule():
    maps = torch.tensor([[[-5.0, 1.0], [0.8, 0.7]], [[-1.0, -2.0], [0.0, -0.5]]])
    important = rig.important_regions(maps, tau=0.75)
    assert important[0].tolist() == [[False, True], [True, False]]   # ≥ 0.75 × max, negatives never
    assert not important[1].any()                                      # no positive attribution at all


def test_rig_region_lies_inside_every_networks_important_region(model, data, supports):
    explanation = rig.rig_explain(model, data.images[0], supports, tau=0.3, steps=8)
    assert explanation.network_maps.shape == (3, 2, 64, 64)
    recomputed = rig.important_regions(torch.from_numpy(explanation.network_maps), 0.3).numpy()
    np.testing.assert_array_equal(explanation.important, recomputed)
    np.testing.assert_array_equal(explanation.region, recomputed.all(0))
    assert explanation.region.any()
    for k in range(3):
        assert not (explanation.region & ~explanation.important[k]).any()
    assert (explanation.rig[~explanation.region] == 0).all()
    assert (explanation.area["rig"] <= explanation.area["ig_important"]).all()


def test_occlusion_logits_black_out_equal_regions(model, data, supports):
    x = data.images[1]
    region = np.zeros((64, 64), dtype=bool)
    region[10:20, 30:40] = True
    scores = np.random.default_rng(0).random((64, 64))
    logits = rig.occlusion_logits(model, x, PAIR, region, scores)
    assert logits.shape == (3, 2)
    black = model.normalized_constant(0.0)
    with torch.no_grad():
        original = model.module(x[None])[0, list(PAIR)]
        occluded = model.module(torch.where(torch.from_numpy(region), black, x)[None])[0, list(PAIR)]
        top = rig.top_region(scores, 100)
        ig_occluded = model.module(torch.where(torch.from_numpy(top), black, x)[None])[0, list(PAIR)]
    np.testing.assert_allclose(logits, torch.stack([original, occluded, ig_occluded]).numpy(), rtol=1e-4, atol=1e-5)
    assert top.sum() == region.sum() and scores[top].min() >= scores[~top].max()


def test_embedded_training_sets_hold_out_the_next_seed(model):
    train, val = rig.training_sets(model, PAIR, seed=3, n=8)
    assert len(train.labels) == 8 and len(val.labels) == 64  # a quarter of n, at least 64
    torch.testing.assert_close(train.images, rig.embedded_data(model, PAIR, 3, 8).images)
    torch.testing.assert_close(val.images, rig.embedded_data(model, PAIR, 4, 64).images)
    assert train.identity != val.identity


def test_training_needs_two_different_classes_and_the_right_data(model, resnet_random):
    with pytest.raises(ParameterError, match="two different classes"):
        rig.class_pair(model, [PAIR[0], dataset.CLASSES[PAIR[0]]])
    assert rig.class_pair(model, [dataset.CLASSES[PAIR[1]], str(PAIR[0])]) == (PAIR[1], PAIR[0])
    with pytest.raises(ParameterError, match="folder of training images"):
        rig.training_sets(resnet_random, (0, 1))
    with pytest.raises(ParameterError, match="distinct"):
        rig.train_support_networks(model, rig.embedded_data(model, PAIR, 0, 2), (2, 2))


def test_alpha_text_round_trips():
    assert rig.parse_alphas(rig.format_alphas(rig.DEFAULT_ALPHAS)) == list(rig.DEFAULT_ALPHAS)
    assert rig.parse_alphas("0; 2.5,") == [0.0, 2.5]
    with pytest.raises(ParameterError, match="numbers"):
        rig.parse_alphas("0, two")


def test_the_pair_is_matched_by_name_case_insensitively_in_every_model(model):
    names = [c.upper() for c in reversed(dataset.CLASSES)]  # other indices, other case
    shuffled = _tiny("shuffled", "embedded", model.module, names)
    a, b = (dataset.CLASSES[c] for c in PAIR)
    flipped = tuple(len(names) - 1 - c for c in PAIR)
    assert rig.matched_pair([model, shuffled], [a, b]) == [PAIR, flipped]
    assert rig.matched_pair([shuffled, model], list(flipped)) == [flipped, PAIR]  # indices name the first's classes
    lacking = _tiny("lacking", "embedded", model.module, [f"other {c}" if c == b else c for c in dataset.CLASSES])
    with pytest.raises(ParameterError, match=f"lacking has no class named '{b}'; the pair must exist"):
        rig.matched_pair([model, lacking], [a, b])
    assert rig.architecture_labels([model, shuffled, model, model]) == ["tiny", "shuffled", "tiny_2", "tiny_3"]


def test_two_architectures_get_their_own_networks_maps_and_tables(model, resnet, tmp_path):
    image = dataset.make_sample(seed=5, index=0).pil()
    seen = []
    runs = rig.rig_architectures([model, resnet], [dataset.CLASSES[PAIR[0]], dataset.CLASSES[PAIR[1]].upper()],
                                 image, n=8, alphas=(0, 2), epochs=1, steps=4, tau=0.5, cache_dir=tmp_path,
                                 progress=lambda fraction, message: seen.append((fraction, message)))
    assert [r.label for r in runs] == ["tiny", "tiny_resnet"]
    engine = Engine("cpu")
    for run in runs:
        x = run.model.preprocess(image)
        assert run.explanation.classes == PAIR and run.explanation.network_names == ["classifier", "α=2"]
        assert run.explanation.network_maps.shape == (2, 2, 64, 64)
        # Table 3: row 0 is this model's own logits on the image, rows 1-2 its occlusions.
        assert run.logits.shape == (3, 2)
        np.testing.assert_allclose(run.logits[0], rig.batched_logits(run.model.module, x[None], engine)[0, list(PAIR)],
                                   rtol=1e-5, atol=1e-6)
        # Table 1: this model's accuracy on its own validation images, a prediction being the larger logit.
        assert [row["network"] for row in run.accuracy] == ["classifier", "α=2"]
        val_logits = rig.batched_logits(run.model.module, run.val.images, engine)
        predicted = torch.tensor(PAIR)[(val_logits[:, PAIR[1]] > val_logits[:, PAIR[0]]).long()]
        assert run.accuracy[0]["val total"] == pytest.approx(100 * float((predicted == run.val.labels).float().mean()))
        assert len(run.train.labels) == 8 and len(run.val.labels) == 64
    # Each architecture trains and stores its own networks: distinct stores, each holding its architecture's weights.
    stores = [run.supports.directory for run in runs]
    assert stores[0] != stores[1] and all(d.parent == tmp_path for d in stores)
    for run in runs:
        stored = torch.load(run.supports.directory / "alpha_2.pt", weights_only=True)
        assert stored.keys() == run.model.module.state_dict().keys()
    assert not np.allclose(runs[0].logits, runs[1].logits)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] == pytest.approx(1)
    assert {m.split(":")[0] for _, m in seen} == {"tiny", "tiny_resnet"}
