"""Model registry: cached pretrained weights, offline failure, user checkpoints, families. Never downloads."""
import dataclasses
import io
import socket
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from xai_core import models, zoo
from xai_core.errors import CheckpointError, ParameterError, WeightsUnavailableError
from xai_core.models import build_random, list_models, load_model, weights_available, weights_path
from xai_core.zoo import weights
from xai_core.zoo.checkpoints import head_weight
from xai_core.zoo.family import Preprocessing, Pretrained


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty hub cache; any attempt to reach the network fails at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would win over TORCH_HOME

    def no_network(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path


def _outputs(module: torch.nn.Module, seed: int = 1) -> torch.Tensor:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return module.eval()(x)


def _checkpoint_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


# ------------------------------------------------------------ pretrained weights
def test_cached_weights_are_loaded_from_torch_home(torch_home):
    path = weights_path("resnet18")
    assert path == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert not weights_available("resnet18")
    reference = build_random("resnet18", device="cpu", seed=3)
    path.parent.mkdir(parents=True)
    torch.save(reference.module.state_dict(), path)
    assert weights_available("resnet18")
    row = next(r for r in list_models() if r["name"] == "resnet18")
    assert row["weights_available"] and row["weights_file"] == path.name and row["weights_dir"] == str(path.parent)

    model = load_model("resnet18", device="cpu", allow_download=False)
    torch.testing.assert_close(_outputs(model.module), _outputs(reference.module), rtol=0, atol=0)
    assert model.categories[281] == "tabby" and model.num_classes == 1000
    assert "ResNet18_Weights" in model.weights_source
    assert (model.input_size, model.resize_size) == (224, 256)
    assert model.mean == pytest.approx((0.485, 0.456, 0.406))
    model.get_layer(model.default_layer)


def test_offline_without_weights_names_the_file_and_the_folder(torch_home):
    folder = torch_home / "hub" / "checkpoints"
    with pytest.raises(WeightsUnavailableError) as err:
        load_model("resnet18", device="cpu")
    message = str(err.value)
    assert "resnet18-f37072fd.pth" in message and str(folder) in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence


def test_a_failed_download_also_gives_the_advice(torch_home, monkeypatch):
    attempts = []

    def refuse(url, dst, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(weights, "_reachable", lambda url: True)  # get past the probe
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with pytest.raises(WeightsUnavailableError, match="resnet18-f37072fd.pth"):
        load_model("resnet18", device="cpu")
    assert attempts == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]


def test_unknown_model_name():
    with pytest.raises(ParameterError, match="resnet18"):
        load_model("resnet19")


@pytest.mark.parametrize("name", [n for n in models.TORCHVISION
                                  if n not in ("vgg16", "alexnet", "vit_b_16", "swin_t")])  # transformers: test_transformers.py
def test_every_architecture_builds_with_a_usable_cam_layer(name):
    model = build_random(name, num_classes=3, device="cpu")
    features = []
    handle = model.get_layer(model.default_layer).register_forward_hook(lambda m, i, o: features.append(o))
    try:
        logits = _outputs(model.module)
    finally:
        handle.remove()
    assert logits.shape == (2, 3) and model.categories == ["class 0", "class 1", "class 2"]
    assert features[0].ndim == 4 and features[0].shape[0] == 2  # a spatial feature map


def test_build_random_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = (build_random("embedded", num_classes=2, device="cpu", seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(_outputs(a.module), _outputs(b.module))
    assert not torch.equal(_outputs(a.module), _outputs(c.module))
    assert a.weights_source == "random"


# ------------------------------------------------------------------ checkpoints
def test_checkpoint_with_two_classes_and_names(tmp_path):
    trained = build_random("resnet18", num_classes=2, device="cpu", seed=5)
    path = tmp_path / "cats_dogs.pt"
    torch.save(trained.module.state_dict(), path)
    model = load_model("resnet18", checkpoint=path, class_names=["cat", "dog"], device="cpu")
    assert model.categories == ["cat", "dog"] and model.weights_source == "checkpoint cats_dogs.pt"
    torch.testing.assert_close(_outputs(model.module), _outputs(trained.module), rtol=0, atol=0)
    assert model.resolve_target("dog") == 1

    assert load_model("resnet18", checkpoint=str(path), device="cpu").categories == ["class 0", "class 1"]
    with pytest.raises(CheckpointError, match="2 output classes but 3 class names"):
        load_model("resnet18", checkpoint=path, class_names=["a", "b", "c"], device="cpu")


def test_a_single_output_checkpoint_is_refused():
    # Its softmax is always 1: RISE, Score-CAM and occlusion would return flat maps.
    one = build_random("embedded", num_classes=1, device="cpu")
    with pytest.raises(CheckpointError, match="at least two classes"):
        load_model("embedded", checkpoint=_checkpoint_bytes(one.module.state_dict()), device="cpu")


@pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict", "model"])
def test_wrapped_and_dataparallel_checkpoints(wrapper):
    trained = build_random("resnet18", num_classes=3, device="cpu", seed=7)
    prefixed = {f"module.{k}": v for k, v in trained.module.state_dict().items()}
    data = _checkpoint_bytes({wrapper: prefixed, "class_names": ["a", "b", "c"], "epoch": 4})
    upload = io.BytesIO(data)
    upload.name = "run42.pth"  # like a Streamlit UploadedFile
    model = load_model("resnet18", checkpoint=upload, device="cpu")
    assert model.categories == ["a", "b", "c"] and model.weights_source == "checkpoint run42.pth"
    if wrapper == "model":  # the names given as an argument win over the stored ones
        assert load_model("resnet18", checkpoint=data, class_names=["x", "y", "z"],
                          device="cpu").categories == ["x", "y", "z"]
    torch.testing.assert_close(_outputs(model.module), _outputs(trained.module), rtol=0, atol=0)


def test_mismatched_checkpoint_lists_missing_unexpected_and_shapes():
    state = build_random("resnet18", num_classes=2, device="cpu").module.state_dict()
    state["extra_head.weight"] = torch.zeros(1)
    del state["layer4.1.bn2.running_var"]
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    with pytest.raises(CheckpointError) as err:
        load_model("resnet18", checkpoint=_checkpoint_bytes(state), device="cpu")
    message = str(err.value)
    assert "missing keys (1): layer4.1.bn2.running_var" in message
    assert "unexpected keys (1): extra_head.weight" in message
    assert "conv1.weight (64, 3, 3, 3) vs (64, 3, 7, 7)" in message


def test_checkpoint_of_another_architecture_truncates_the_key_lists():
    state = build_random("mobilenet_v3_large", num_classes=2, device="cpu").module.state_dict()
    with pytest.raises(CheckpointError, match=r"does not fit the resnet18 architecture: missing keys \(\d+\): "
                                              r"[^;]* and \d+ more; unexpected keys"):
        load_model("resnet18", checkpoint=_checkpoint_bytes(state), device="cpu")


@pytest.mark.parametrize("content", [b"definitely not a checkpoint", _checkpoint_bytes([1, 2, 3]),
                                     _checkpoint_bytes({"weights": "a string"})])
def test_garbage_checkpoints_are_refused_in_one_sentence(tmp_path, content):
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="garbage.pt") as err:
        load_model("resnet18", checkpoint=path, device="cpu")
    assert str(err.value).endswith(".") and "\n" not in str(err.value)


def test_pickled_modules_are_refused_because_they_could_run_code(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_model("resnet18", checkpoint=path, device="cpu")


# --------------------------------------------------------------------- embedded
def test_embedded_model_loads_its_checkpoint_with_the_dataset_facts(tmp_path, monkeypatch):
    from xai_core import dataset, embedded

    path = tmp_path / "embedded.pt"
    monkeypatch.setattr(embedded, "CHECKPOINT", path)
    with pytest.raises(WeightsUnavailableError, match="embedded.pt"):
        load_model("embedded", device="cpu")
    assert not weights_available("embedded")

    trained = build_random("embedded", device="cpu", seed=2)
    embedded.save_embedded(trained.module, path)
    model = load_model("embedded", device="cpu")
    assert weights_available("embedded") and model.categories == list(dataset.CLASSES)
    assert model.input_size == model.resize_size == dataset.IMAGE_SIZE and model.mean == dataset.MEAN
    assert model.default_layer == embedded.DEFAULT_LAYER
    torch.testing.assert_close(_outputs(model.module), _outputs(trained.module), rtol=0, atol=0)


def test_embedded_checkpoint_with_other_width_and_classes():
    from xai_core.embedded import EmbeddedNet

    net = EmbeddedNet(num_classes=2, width=8)
    model = load_model("embedded", checkpoint=_checkpoint_bytes({"state_dict": net.state_dict()}),
                       class_names=["left", "right"], device="cpu")
    torch.testing.assert_close(_outputs(model.module), _outputs(net), rtol=0, atol=0)
    assert model.categories == ["left", "right"]


def test_half_precision_checkpoint_is_loaded_in_float32():
    net = build_random("embedded", device="cpu", seed=4).module
    half = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    model = load_model("embedded", checkpoint=_checkpoint_bytes(half), device="cpu")
    assert all(p.dtype == torch.float32 for p in model.module.parameters())
    torch.testing.assert_close(_outputs(model.module), _outputs(net.half().float()), rtol=0, atol=0)


def test_old_densenet_key_names_are_accepted():
    net = build_random("densenet121", num_classes=2, device="cpu").module
    # torchvision's original DenseNet file (PyTorch 0.3 era) spells "norm1" as "norm.1" (and
    # conv/relu alike) and has no BatchNorm "num_batches_tracked" counters.
    old = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
           for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1." in k for k in old)
    model = load_model("densenet121", checkpoint=_checkpoint_bytes(old), device="cpu")
    assert not any(t.is_meta for t in model.module.state_dict().values())
    torch.testing.assert_close(_outputs(model.module), _outputs(net), rtol=0, atol=0)


def test_impossible_devices_are_refused():
    with pytest.raises(ParameterError, match="Unknown device 'gpu'"):
        build_random("embedded", device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="CUDA is not available"):
            build_random("embedded", device="cuda")


# --------------------------------------------------------------------- families
class _ToyFamily:
    """A family the registry has never heard of: a 1×1 conv and a linear head, weights in a dict."""

    names = ("toy",)
    prefix = ""

    def __init__(self, trained: dict[str, torch.Tensor]):
        self.trained = trained

    def build(self, name, num_classes=None, **arch):
        features = nn.Sequential(nn.Conv2d(3, arch.get("channels", 4), 1), nn.ReLU())
        return nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(arch.get("channels", 4), num_classes or 3))

    def architecture(self, name, state):
        head = head_weight(self, name, state)
        return {} if head is None else {"num_classes": head.shape[0], "channels": head.shape[1]}

    def categories(self, name):
        return ["red", "green", "blue"]

    def preprocessing(self, name):
        return Preprocessing(mean=(0.5,) * 3, std=(0.2,) * 3, input_size=32, resize_size=40)

    def default_layer(self, name):
        return "0"

    def weights_path(self, name):
        return Path("/nonexistent/toy.pt")

    def load_pretrained(self, name, allow_download):
        module = self.build(name)
        module.load_state_dict(self.trained)
        return Pretrained(module, self.categories(name), "toy weights")

    def description(self, name):
        return "a toy"


def test_a_new_family_is_one_entry_in_the_table(monkeypatch):
    trained = _ToyFamily({}).build("toy").state_dict()
    monkeypatch.setattr(zoo, "FAMILIES", (*zoo.FAMILIES, _ToyFamily(trained)))

    model = load_model("toy", device="cpu")
    assert (model.categories, model.weights_source, model.default_layer) == (["red", "green", "blue"], "toy weights", "0")
    assert (model.input_size, model.resize_size, model.mean) == (32, 40, (0.5,) * 3)
    torch.testing.assert_close(model.module.state_dict(), trained, rtol=0, atol=0)
    assert next(r for r in list_models() if r["name"] == "toy")["description"] == "a toy"

    wider = _ToyFamily({}).build("toy", num_classes=2, channels=6)
    loaded = load_model("toy", checkpoint=_checkpoint_bytes(wider.state_dict()), device="cpu")
    assert loaded.categories == ["class 0", "class 1"]  # the family's own names do not fit 2 classes
    torch.testing.assert_close(_outputs(loaded.module), _outputs(wider), rtol=0, atol=0)
    assert build_random("toy", device="cpu").num_classes == 3


def test_every_name_belongs_to_exactly_one_family():
    names = [n for family in zoo.FAMILIES for n in family.names]
    assert names == models.MODEL_NAMES and len(set(names)) == len(names)
    assert models.EMBEDDED in names and set(models.TORCHVISION) <= set(names)
    with pytest.raises(ParameterError, match="embedded_vit, alexnet"):
        zoo.family_of("resnet19")


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (120, 90), (500, 37)])
def test_preprocessing_equals_torchvision_transforms(interpolation, size):
    from torchvision.transforms import functional as TF

    model = dataclasses.replace(build_random("resnet18", num_classes=10), interpolation=interpolation,
                                resize_size=160, input_size=128)
    image = Image.fromarray(np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    expected = TF.normalize(TF.to_tensor(TF.center_crop(
        TF.resize(image, 160, interpolation=TF.InterpolationMode(interpolation), antialias=True), [128, 128])),
        model.mean, model.std)
    assert torch.equal(model.preprocess(image), expected)


def test_the_torchvision_table_copies_the_weights_meta():
    from torchvision.models import get_model_weights

    from xai_core.zoo.torchvision_family import TORCHVISION
    for name, spec in TORCHVISION.items():
        weights = get_model_weights(name).DEFAULT
        assert weights.url.rsplit("/", 1)[1] == spec.weights_file, name
        assert weights.meta["num_params"] == spec.num_params, name
        assert weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] == spec.top1, name
