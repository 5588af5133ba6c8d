"""The method contract, checked for every registered method (the registry drives the list, so a
method added with one line is tested here with no edit): it runs on the embedded model, on a
torchvision architecture with random weights and on the embedded vision transformer (or refuses
with a reason), returns one finite map per target, gives the same maps for several targets at
once as one at a time and whatever the engine's batch size, leaves no hook and no backward rule
behind even when the model fails mid-way, and is documented."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import _get_current_function_mode_stack

from xai_core.engine import Engine
from xai_core.errors import ParameterError
from xai_core.instrument.capture import hook_count
from xai_core.methods import METHODS, explain, explain_batch
from xai_core.model_handle import LoadedModel

# Small settings so every method runs in well under a second at 64 px; a method not listed runs
# with its defaults.
FAST: dict[str, dict] = {
    "smoothgrad": {"samples": 3},
    "ig": {"steps": 4},
    "rise": {"masks": 50},
    "occlusion": {"window": 16, "stride": 16},
}
# Score- and Ablation-CAM make one forward per channel: on ResNet-18 a 128-channel layer keeps them fast.
RESNET_LAYER = "layer2"
ALL = list(METHODS)
TARGETS = [3, 1]


def params_for(name: str, model: LoadedModel) -> dict:
    params = dict(FAST.get(name, {}))
    if METHODS[name].uses_layer and model.arch == "resnet18":
        params["layer"] = RESNET_LAYER
    return params


def run(model: LoadedModel, x: torch.Tensor, name: str, targets, engine: Engine | None = None):
    try:
        return explain(model, x, name, targets, params_for(name, model), engine=engine)
    except ParameterError as err:  # a method may refuse an architecture, with a reason (CAM on no GAP head)
        pytest.skip(f"{name} refuses {model.arch}: {err}")


@pytest.fixture(params=["embedded", "resnet18", "embedded_vit"])
def model(request, embedded, resnet_random, embedded_vit_random) -> LoadedModel:
    return {"embedded": embedded, "resnet18": resnet_random, "embedded_vit": embedded_vit_random}[request.param]


@pytest.fixture
def home(request, embedded, embedded_vit_random) -> LoadedModel:
    """The model a method's consistency is checked on: the embedded CNN, or the embedded ViT for the
    methods that only transformers have (attention)."""
    return embedded_vit_random if METHODS[request.node.callspec.params["name"]].family == "attention" else embedded


@pytest.mark.parametrize("name", ALL)
def test_one_finite_map_per_target_and_no_hook_left(model, image64, name):
    results = run(model, image64, name, TARGETS)
    assert [r.target for r in results] == TARGETS
    for r in results:
        assert r.map.shape == tuple(image64.shape[-2:]) and np.isfinite(r.map).all()
        if r.attribution is not None:
            assert r.attribution.shape == tuple(image64.shape) and np.isfinite(r.attribution).all()
    assert hook_count(model.module) == 0 and not _get_current_function_mode_stack()
    assert not any(p.grad is not None for p in model.module.parameters())  # shared weights stay clean
    if METHODS[name].class_agnostic:
        np.testing.assert_array_equal(results[0].map, results[1].map)
    else:  # a method that ignored the target would give the same map for two classes
        assert not np.allclose(results[0].map, results[1].map)


@pytest.mark.parametrize("name", ALL)
def test_several_targets_equal_one_call_each(home, image64, name):
    together = run(home, image64, name, TARGETS)
    for r in together:
        [alone] = run(home, image64, name, [r.target])
        np.testing.assert_allclose(r.map, alone.map, rtol=1e-4, atol=1e-6 * max(1.0, np.abs(alone.map).max()))


@pytest.mark.parametrize("name", ALL)
def test_the_engine_batch_size_does_not_change_the_map(home, image64, name):
    [default] = run(home, image64, name, TARGETS[:1])
    [one_by_one] = run(home, image64, name, TARGETS[:1], engine=Engine("cpu", batch_size=1))
    np.testing.assert_allclose(default.map, one_by_one.map, rtol=1e-4,
                               atol=1e-6 * max(1.0, np.abs(default.map).max()))


@pytest.mark.parametrize("name", ALL)
def test_a_batch_of_images_gives_each_image_its_own_maps(home, name):
    """explain_batch (batched where the method has a batched form) equals explain image by image,
    each image with its own targets."""
    xs = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    targets = [[3, 1], [0, 5], [7, 7]]
    batched = explain_batch(home, xs, name, targets, FAST.get(name, {}), engine=Engine("cpu", batch_size=2))
    for image, row in zip(xs, batched):
        alone = explain(home, image, name, [r.target for r in row], FAST.get(name, {}))
        for b, a in zip(row, alone):
            assert b.target == a.target
            np.testing.assert_allclose(b.map, a.map, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(a.map).max()))


def test_batched_forms_exist_for_the_methods_that_average_many_items():
    assert {m.name for m in METHODS.values() if m.batch_fn is not None} >= {
        "saliency", "gradient", "grad_x_input", "guided_backprop", "deconvnet", "smoothgrad", "gradcam",
        "gradcampp", "xgradcam", "hirescam", "layercam", "ig", "rise"}


class _Failing(nn.Module):
    """The embedded network, raising in its first block or in its head (after the CAM layer)."""

    def __init__(self, net: nn.Module, where: str):
        super().__init__()
        self.net, self.where = net, where

    def forward(self, x):
        if self.where == "first block":
            raise RuntimeError("the model failed")
        self.net.features(x)
        raise RuntimeError("the model failed")


@pytest.mark.parametrize("where", ["first block", "head"])
@pytest.mark.parametrize("name", ALL)
def test_a_failing_forward_leaves_no_hook_and_no_rule(embedded, image64, name, where):
    module = _Failing(embedded.module, where)
    failing = LoadedModel(name="failing", arch="failing", module=module, categories=embedded.categories,
                          mean=embedded.mean, std=embedded.std, input_size=64, resize_size=64,
                          weights_source="test", default_layer="net." + embedded.default_layer,
                          device=torch.device("cpu"))
    try:
        explain(failing, image64, name, TARGETS, FAST.get(name, {}))
        # Only a method that needs nothing after its layer (its forward is cut there) may succeed.
        assert where == "head" and METHODS[name].uses_layer, f"{name} ran through a failing model"
    except RuntimeError as err:
        assert "the model failed" in str(err)
    assert hook_count(module) == 0 and not _get_current_function_mode_stack()


@pytest.mark.parametrize("name", ALL)
def test_every_method_is_documented_and_its_defaults_are_valid(name):
    method = METHODS[name]
    assert method.label and method.description and method.reference
    parsed = method.parse_params({})
    assert set(parsed) >= set(method.params)
    for param_name, param in method.params.items():
        assert param.help, f"{name}.{param_name} has no help text"
        if param.kind is float:
            with pytest.raises(ParameterError):
                method.parse_params({param_name: float("nan")})


@pytest.mark.parametrize("name", ["methods", "metrics"])
def test_the_readme_tables_are_the_registries(name):
    from scripts.update_readme import TABLES, markers
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    begin, end = markers(name)
    assert begin in readme and end in readme
    assert readme.split(begin)[1].split(end)[0].strip() == TABLES[name]()
