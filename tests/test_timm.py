"""timm models by name (``timm:NAME``): names, what is read from the model (default layer, token grid
and prefix tokens, preprocessing, class names), logits unwrapping, weights from the local cache only,
the sidebar's name box and the CLI — and every registered method on a ResNet, a ConvNeXt, a ViT, a
distilled DeiT and a Swin from timm.

Random weights everywhere (no download). Facts about the architectures are checked at the
geometry of timm's own config on the meta device (no weights, no compute); the methods run on
narrow versions at 64 px (``timm_family.create`` with ``create_model`` arguments), which keep the
layer names, the layouts and the activations of the real architectures.
"""
from __future__ import annotations

import dataclasses
import io
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.overrides import _get_current_function_mode_stack

from xai_core import models, zoo
from xai_core.cli import main
from xai_core.errors import ParameterError, WeightsUnavailableError
from xai_core.imageio import load_sample
from xai_core.instrument.capture import capture, hook_count
from xai_core.instrument.layout import NCHW, TOKENS, Layout
from xai_core.methods import METHODS, explain
from xai_core.zoo import timm_family
from xai_core.zoo.checkpoints import with_weights
from xai_core.zoo.family import Preprocessing, Pretrained
from xai_core.zoo.outputs import returning_logits
from xai_core.zoo.timm_family import FAMILY, create

pytest.importorskip("timm")

RESNET, CONVNEXT, VIT, DEIT, SWIN = ("timm:resnet10t", "timm:convnext_atto", "timm:vit_tiny_patch16_224",
                                     "timm:deit_tiny_distilled_patch16_224", "timm:swin_tiny_patch4_window7_224")
# At the config's geometry: the default layer and how its output lies (a ViT's class token, a DeiT's class and
# distillation tokens before the 14×14 patch grid; Swin's block norm reads tokens, 0 prefix, on its 7×7 grid).
DEFAULTS = {
    RESNET: ("layer4", Layout(NCHW, (6, 6))),        # 176 px / 32 (timm's pool_size says 6×6 too)
    CONVNEXT: ("stages.3", Layout(NCHW, (7, 7))),
    VIT: ("blocks.11.norm1", Layout(TOKENS, (14, 14), 1)),
    DEIT: ("blocks.11.norm1", Layout(TOKENS, (14, 14), 2)),
    SWIN: ("layers.3.blocks.1.norm2", Layout(TOKENS, (7, 7), 0)),
}
# Narrow versions for the method sweep: same classes, layer names and layouts, a few channels. timm zeroes the
# last norm of each ResNet block at initialisation: its residual branches would be silent and, on a 2×2 layer4,
# the CAMs of random weights all zero.
NARROW = {
    RESNET: {"channels": (8, 16, 24, 32), "zero_init_last": False},
    CONVNEXT: {"dims": (8, 16, 24, 32), "depths": (1, 1, 1, 1)},
    VIT: {"img_size": 64, "embed_dim": 24},
    DEIT: {"img_size": 64, "embed_dim": 24},
    SWIN: {"img_size": 64, "window_size": 4, "embed_dim": 6, "depths": (1, 1, 1, 2)},
}
FAST = {"smoothgrad": {"samples": 3}, "ig": {"steps": 4}, "rise": {"masks": 50},
        "occlusion": {"window": 16, "stride": 16}}
NO_RELU = {"guided_backprop", "deconvnet", "guided_gradcam"}  # their rule is a ReLU's: GELU networks refuse
# What refuses, and why: CAM needs GAP → linear right after its layer (ConvNeXt pools then normalises; the
# transformers' layers are inside blocks); rollout needs global attention with a class token.
REFUSALS = {
    RESNET: {"rollout"},
    CONVNEXT: NO_RELU | {"cam", "rollout"},
    VIT: NO_RELU | {"cam"},
    DEIT: NO_RELU | {"cam"},
    SWIN: NO_RELU | {"cam", "rollout"},
}
TARGETS = [3, 1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models here are tiny: on busy cores a second intra-op thread costs more in waiting than it gains
    (this file ran in 29 s with one thread, 60 s with two, on the same 2 cores under a load of 8)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def empty_caches(tmp_path, monkeypatch) -> Path:
    """Empty Hugging Face and torch hub caches (the user's stay untouched)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def hf_cache_file(root: Path, repo: str, filename: str = "model.safetensors") -> Path:
    """Where ``hf download`` puts ``filename`` of ``repo`` (refs/main → snapshot), folders made."""
    folder = root / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    (folder / "snapshots" / "0123abcd").mkdir(parents=True)
    return folder / "snapshots" / "0123abcd" / filename


# ------------------------------------------------------------------------------- names
def test_timm_names_go_to_the_timm_family_and_unknown_ones_say_what_timm_has():
    assert zoo.family_of(RESNET) is FAMILY and zoo.family_of("timm:resnet18.a1_in1k") is FAMILY
    with pytest.raises(ParameterError, match="did you mean resnet18"):
        models.build_random("timm:resnet19")
    with pytest.raises(ParameterError, match=r"Invalid pretrained tag \(nope\) for resnet18"):
        models.build_random("timm:resnet18.nope")
    with pytest.raises(ParameterError, match="or timm:NAME"):
        zoo.family_of("resnet19")


# ------------------------------------------------------------- read from the model
@pytest.mark.parametrize("name", list(DEFAULTS))
def test_the_default_layer_and_its_layout_are_read_from_the_model(name):
    layer, layout = DEFAULTS[name]
    assert FAMILY.default_layer(name) == layer
    module, size = timm_family._meta_module(name), FAMILY.preprocessing(name).input_size
    with capture(module, layer) as seen:  # a meta-device forward: shapes only
        module(torch.empty(1, 3, size, size, device="meta"))
    assert seen.layout() == layout


def test_the_built_module_sets_the_input_size_of_a_vision_transformer():
    model = create(DEIT, 10, **NARROW[DEIT])
    assert (model.input_size, model.default_layer, model.num_classes) == (64, "blocks.11.norm1", 10)
    assert FAMILY.preprocessing(DEIT).input_size == 224  # the config's own
    with capture(model.module, model.default_layer) as seen:
        model.module(torch.zeros(1, 3, 64, 64))
    assert seen.layout() == Layout(TOKENS, (4, 4), 2)


@pytest.mark.parametrize("name, narrow", [(RESNET, NARROW[RESNET]), (VIT, {"embed_dim": 24})])
def test_preprocessing_equals_timms_own_eval_transform(name, narrow):
    """Resize the shorter side to floor(size / crop_pct), centre crop, normalise: timm's eval pipeline."""
    from timm.data import create_transform, resolve_data_config

    model = create(name, **narrow)  # at the config's input size
    config = resolve_data_config(pretrained_cfg=timm_family._config(name))
    image = load_sample("cat.jpg")
    expected = create_transform(**config, is_training=False)(image)
    assert model.input_size == config["input_size"][-1] and model.interpolation == config["interpolation"]
    torch.testing.assert_close(model.preprocess(image), expected, rtol=0, atol=1e-6)


def test_class_names_are_timms_imagenet_labels_and_match_torchvision_s():
    from torchvision.models import ResNet18_Weights

    names = FAMILY.categories(RESNET)
    torchvision_names = ResNet18_Weights.DEFAULT.meta["categories"]
    differ = [i for i, (a, b) in enumerate(zip(names, torchvision_names)) if a != b]
    assert len(names) == 1000 and names[0] == "tench" and len(set(names)) == 1000
    assert differ == [134, 517, 638, 639]  # two names shared by two classes each, told apart by their WordNet ids
    assert (names[134], names[517]) == ("crane (n02012849)", "crane (n03126707)")
    assert create(RESNET, 10, **NARROW[RESNET]).categories == [f"class {i}" for i in range(10)]


# ---------------------------------------------------------------- every method
@pytest.fixture(scope="module")
def narrow_models() -> dict:
    return {name: create(name, 10, **kwargs) for name, kwargs in NARROW.items()}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", list(NARROW))
def test_every_method_runs_on_each_timm_family_or_refuses_with_a_reason(narrow_models, image64, name, method):
    model = narrow_models[name]
    assert model.default_layer == DEFAULTS[name][0]
    try:
        results = explain(model, image64, method, TARGETS, FAST.get(method, {}))
    except ParameterError as err:
        assert method in REFUSALS[name], f"{method} refused {name}: {err}"
        assert str(err).strip()
        return
    finally:
        assert hook_count(model.module) == 0 and not _get_current_function_mode_stack()
        assert all(p.grad is None for p in model.module.parameters())
    assert method not in REFUSALS[name], f"{method} was expected to refuse {name}"
    assert [r.target for r in results] == TARGETS
    for r in results:
        assert r.map.shape == (64, 64) and np.isfinite(r.map).all()
    if not METHODS[method].class_agnostic:  # a method that ignored the target would give one map twice
        assert not np.allclose(results[0].map, results[1].map)


# ------------------------------------------------------------------- logits only
def test_a_distilled_deit_in_distillation_training_returns_its_class_head_logits():
    model = create(DEIT, 10, **NARROW[DEIT])
    module, x = model.module.train(), torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    module.set_distilled_training(True)
    with torch.no_grad():
        class_head, distillation_head = module(x)  # timm: both heads in distillation training, else their mean
        names, keys = [n for n, _ in module.named_modules()], list(module.state_dict())
        unwrapped = returning_logits(module, x)
        torch.testing.assert_close(unwrapped(x), class_head, rtol=0, atol=0)
        torch.testing.assert_close(unwrapped.eval()(x), (class_head + distillation_head) / 2)
    assert unwrapped is module and type(module).__name__ == "VisionTransformerDistilled"
    assert [n for n, _ in module.named_modules()] == names and list(module.state_dict()) == keys
    assert module.num_prefix_tokens == 2  # what the token layout reads is still there


class _DictNet(nn.Module):
    """A classifier returning ``{"logits": ..., "features": ...}``, or only its features."""

    def __init__(self, with_logits: bool = True):
        super().__init__()
        self.features, self.head, self.with_logits = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3), with_logits

    def forward(self, x):
        features = self.features(x).relu()
        pooled = features.mean((2, 3))
        return {"logits": self.head(pooled), "features": features} if self.with_logits else {"a": pooled, "b": pooled}


@dataclasses.dataclass
class _DictFamily:
    """A one-model family whose module returns a dict (as a user's or a Hugging Face model may)."""

    with_logits: bool
    names: tuple[str, ...] = ("dict_net",)
    prefix: str = ""

    def build(self, name, num_classes=None, **arch):
        return _DictNet(self.with_logits)

    def architecture(self, name, state):
        return {}

    def categories(self, name):
        return ["a", "b", "c"]

    def preprocessing(self, name):
        return Preprocessing(mean=(0.5,) * 3, std=(0.2,) * 3, input_size=16, resize_size=16)

    def default_layer(self, name):
        return "features"

    def weights_path(self, name):
        return Path("/nonexistent/dict_net.pt")

    def load_pretrained(self, name, allow_download):
        return Pretrained(self.build(name), self.categories(name), "none")

    def description(self, name):
        return "returns a dict"


def test_the_registry_unwraps_a_dict_output_to_its_logits(monkeypatch):
    monkeypatch.setattr(zoo, "FAMILIES", (*zoo.FAMILIES, _DictFamily(True)))
    model = models.build_random("dict_net", device="cpu")
    x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model.module(x[None])
        expected = model.module.head(model.module.features(x[None]).relu().mean((2, 3)))
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    [result] = explain(model, x, "gradcam", [1])
    assert result.map.shape == (16, 16) and np.isfinite(result.map).all()
    monkeypatch.setattr(zoo, "FAMILIES", (*zoo.FAMILIES[:-1], _DictFamily(False)))
    with pytest.raises(ParameterError, match="no logits can be found"):
        models.build_random("dict_net", device="cpu")


# ---------------------------------------------------------------------- weights
def test_missing_weights_say_what_to_download_and_where_without_touching_the_network(empty_caches, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the timm family must not use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(WeightsUnavailableError) as raised:
        models.load_model(RESNET, device="cpu")
    message = str(raised.value)
    assert "hf download timm/resnet10t.c3_in1k" in message and str(empty_caches / "hf" / "hub") in message
    assert "resnet10t_176_c3-f3215ab1.pth" in message and str(empty_caches / "torch" / "hub" / "checkpoints") in message
    assert not models.weights_available(RESNET) and FAMILY.names == ()


def test_weights_in_the_torch_hub_cache_load(empty_caches):
    reference = models.build_random(RESNET, seed=3)
    path = models.weights_path(RESNET)  # the file timm publishes at its URL, in $TORCH_HOME/hub/checkpoints
    assert path == empty_caches / "torch" / "hub" / "checkpoints" / "resnet10t_176_c3-f3215ab1.pth"
    path.parent.mkdir(parents=True)
    torch.save(reference.module.state_dict(), path)
    model = models.load_model(RESNET, device="cpu")
    torch.testing.assert_close(model.module.state_dict(), reference.module.state_dict(), rtol=0, atol=0)
    assert model.weights_source == "timm resnet10t.c3_in1k" and model.categories[0] == "tench"
    assert (model.input_size, model.resize_size, model.default_layer) == (176, 201, "layer4")


def test_weights_in_the_hugging_face_cache_load_and_are_listed(empty_caches):
    from safetensors.torch import save_file

    reference = models.build_random(RESNET, seed=4)
    save_file(reference.module.state_dict(), hf_cache_file(empty_caches, "timm/resnet10t.c3_in1k"))
    assert FAMILY.names == ("timm:resnet10t.c3_in1k",)
    row = next(r for r in models.list_models() if r["name"] == "timm:resnet10t.c3_in1k")
    assert row["weights_available"] and row["weights_file"] == "model.safetensors"
    assert models.weights_path(RESNET) == models.weights_path(row["name"])  # the bare name means the default tag
    model = models.load_model(RESNET, device="cpu")
    torch.testing.assert_close(model.module.state_dict(), reference.module.state_dict(), rtol=0, atol=0)


def test_a_corrupt_weights_file_says_so(empty_caches):
    path = models.weights_path(RESNET)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="is corrupt"):
        models.load_model(RESNET, device="cpu")


def test_a_user_checkpoint_sets_the_number_of_classes():
    trained = FAMILY.build(RESNET, num_classes=4)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    model = models.load_model(RESNET, checkpoint=buffer.getvalue(), class_names=list("abcd"), device="cpu")
    assert model.categories == list("abcd")
    torch.testing.assert_close(model.module.state_dict(), trained.state_dict(), rtol=0, atol=0)


def test_a_swin_checkpoint_keeps_the_buffers_a_state_dict_does_not_hold():
    """Swin's relative position index is a non-persistent buffer: built on the meta device it would stay empty."""
    trained = FAMILY.build(SWIN, 10, **NARROW[SWIN]).eval()
    model = with_weights(FAMILY, SWIN, trained.state_dict(), "test", num_classes=10, **NARROW[SWIN]).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained(x), rtol=0, atol=0)


# -------------------------------------------------------------------- UI and CLI
def test_the_cli_takes_timm_names_and_prints_one_line_errors(empty_caches, capsys):
    image = empty_caches / "grey.png"
    Image.new("RGB", (32, 32), (128, 128, 128)).save(image)
    assert main(["predict", str(image), "--model", RESNET]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "hf download timm/resnet10t.c3_in1k" in error


def test_the_sidebar_loads_a_typed_timm_name_and_shows_errors(empty_caches):
    from safetensors.torch import save_file
    from streamlit.testing.v1 import AppTest

    from ui.sidebar import TIMM_BY_NAME

    save_file(models.build_random(RESNET).module.state_dict(), hf_cache_file(empty_caches, "timm/resnet10t.c3_in1k"))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120).run()
    at.sidebar.selectbox(key="w.model").set_value(TIMM_BY_NAME).run()
    assert any("Still showing embedded" in c.value for c in at.sidebar.caption) and not at.exception
    at.sidebar.text_input(key="w.timm_name").set_value("resnet10t").run()
    assert not at.exception and not at.error
    assert any(row.get("value") == "timm:resnet10t" for row in at.table[0].value.to_dict("records"))
    at.sidebar.text_input(key="w.timm_name").set_value("resnet19").run()
    assert any("timm has no model named 'resnet19'" in e.value for e in at.sidebar.error)
    # The name box is put back to the model in use, the error staying under it.
    assert at.sidebar.text_input(key="w.timm_name").value == "resnet10t"
    assert any(row.get("value") == "timm:resnet10t" for row in at.table[0].value.to_dict("records"))
    at.sidebar.text_input(key="w.timm_name").set_value("resnet*").run()
    assert any("only letters, digits" in e.value for e in at.sidebar.error)
