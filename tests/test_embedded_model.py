"""The shipped embedded model: loads offline, is CAM-shaped, and is accurate on fresh data."""
import dataclasses

import pytest
import torch

from xai_core import dataset
from xai_core.embedded import CHECKPOINT, DEFAULT_LAYER, EmbeddedNet, load_embedded, save_embedded
from xai_core.errors import CheckpointError, ParameterError
from xai_core.models import load_model

TEST_SEED = 4242  # neither the training seed nor the held-out seed of scripts/train_embedded.py


@pytest.fixture(scope="module")
def model():
    return load_model("embedded", device="cpu")


def test_checkpoint_is_small_and_loads_in_eval_mode():
    assert CHECKPOINT.stat().st_size < 10 * 2 ** 20
    net = load_embedded("cpu")
    assert isinstance(net, EmbeddedNet) and not net.training


def test_head_is_global_average_pooling_then_linear(model):
    """CAM's premise: logits are a linear function of the pooled last feature maps."""
    net = model.module
    x = dataset.tensors(TEST_SEED, 4)[0]
    with torch.no_grad():
        maps = net.features(x)
        assert torch.allclose(net(x), net.fc(maps.mean(dim=(2, 3))), atol=1e-5)
        captured = []
        handle = model.get_layer(DEFAULT_LAYER).register_forward_hook(lambda m, i, o: captured.append(o))
        net(x)
        handle.remove()
    assert torch.equal(captured[0], maps) and maps.shape[-1] == dataset.IMAGE_SIZE // 4


def test_accuracy_on_a_fresh_split(model):
    result = dataset.evaluate(model, TEST_SEED, 640)
    assert result["n"] == 640 and result["accuracy"] >= 0.97
    for k in dataset.PART_PAIR:
        assert result["per_class"][dataset.CLASSES[k]] >= 0.95


def test_evaluate_matches_outputs_to_classes_by_name(model):
    """A model whose outputs come in another order scores the same once mapped by name."""
    order = list(reversed(range(len(dataset.CLASSES))))
    net = EmbeddedNet(width=model.module.fc.in_features // 4)
    net.load_state_dict(model.module.state_dict())
    with torch.no_grad():
        net.fc.weight.copy_(model.module.fc.weight[order])
        net.fc.bias.copy_(model.module.fc.bias[order])
    shuffled = dataclasses.replace(model, module=net.eval(), categories=[dataset.CLASSES[i] for i in order])
    assert dataset.evaluate(shuffled, TEST_SEED, 96) == dataset.evaluate(model, TEST_SEED, 96)


def test_evaluate_rejects_a_model_of_other_classes(model):
    other = dataclasses.replace(model, categories=[f"class {i}" for i in range(len(dataset.CLASSES))])
    with pytest.raises(ParameterError):
        dataset.evaluate(other, TEST_SEED, 8)


def test_checkpoint_of_another_dataset_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    save_embedded(EmbeddedNet(width=4), path)
    saved = torch.load(path, weights_only=True)
    saved["classes"] = saved["classes"][::-1]
    torch.save(saved, path)
    with pytest.raises(CheckpointError):
        load_embedded("cpu", path)
