"""The shipped embedded models: load offline, have the heads their names promise, and are
accurate on fresh data; each metrics file describes the checkpoint beside it."""
import copy
import dataclasses
import functools
import io
import json

import pytest
import torch

from xai_core import dataset
from xai_core.embedded import CHECKPOINT, DEFAULT_LAYER, EmbeddedNet, load_embedded, save_embedded
from xai_core.errors import CheckpointError, ParameterError
from xai_core.instrument.capture import capture
from xai_core.methods import explain
from xai_core.models import build_random, load_model, weights_path
from xai_core.zoo.checkpoints import final_linear
from xai_core.zoo.embedded_family import ARCHITECTURES

TEST_SEED = 4242  # neither the training seed nor the held-out seed of scripts/train_embedded.py
FRESH_N = 320     # 40 images per class
NAMES = list(ARCHITECTURES)


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


# ------------------------------------------------------------------ the whole family
@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_is_accurate_on_a_fresh_split(name):
    metrics = json.loads(weights_path(name).with_name(f"{name}_metrics.json").read_text())
    assert TEST_SEED not in (metrics["train_seed"], metrics["held_out_seed"])
    result = dataset.evaluate(load_model(name, device="cpu"), TEST_SEED, FRESH_N)
    assert result["n"] == FRESH_N and result["accuracy"] >= 0.97
    for k in dataset.PART_PAIR:  # told apart only by a ~5 px marker: chance is 0.5
        assert result["per_class"][dataset.CLASSES[k]] >= 0.9


@pytest.mark.parametrize("name", NAMES)
def test_metrics_file_describes_the_shipped_checkpoint(name):
    path = weights_path(name)
    metrics = json.loads(path.with_name(f"{name}_metrics.json").read_text())
    model = load_model(name, device="cpu")
    assert metrics["checkpoint_bytes"] == path.stat().st_size
    assert metrics["parameters"] == sum(p.numel() for p in model.module.parameters())
    assert metrics["held_out_accuracy"] >= 0.97 and metrics.get("arch", name) == name
    assert set(metrics["held_out_per_class"]) == set(dataset.CLASSES)


def test_the_family_ships_under_ten_megabytes():
    assert sum(weights_path(name).stat().st_size for name in NAMES) < 10 * 2 ** 20


@pytest.mark.parametrize("name, gap_head", [("embedded", True), ("embedded_resnet", True),
                                            ("embedded_vgg", False), ("embedded_vit", False)])
def test_cam_applies_exactly_where_the_head_is_gap_then_linear(name, gap_head):
    """CAM's premise, logits = mean(A) · Wᵀ + b over the default layer A, holds for the GAP heads;
    the dense VGG head and the class-token ViT head are refused with the reason."""
    model = build_random(name, device="cpu", seed=1)
    x = dataset.tensors(TEST_SEED, 2)[0]
    with torch.no_grad(), capture(model.module, model.default_layer, detach=True) as seen:
        logits = model.module(x)
    fc = final_linear(model.module)
    if gap_head:
        assert torch.allclose(logits, fc(seen.output.mean(dim=(2, 3))), atol=1e-5)
        assert explain(model, x[0], "cam", [0]) is not None
    else:
        with pytest.raises(ParameterError, match="global average pooling and the final linear layer"):
            explain(model, x[0], "cam", [0])


def test_vit_is_a_timm_vision_transformer():
    """Same state dict keys and, with the same (non-trivial) weights, the same logits as timm's ViT."""
    timm = pytest.importorskip("timm")
    model = build_random("embedded_vit", device="cpu", seed=3)
    net = model.module
    stem = copy.deepcopy(net.patch_embed.backbone)  # timm's HybridEmbed takes the CNN it embeds with
    reference = timm.models.VisionTransformer(
        img_size=dataset.IMAGE_SIZE, patch_size=1, num_classes=model.num_classes,
        embed_layer=functools.partial(timm.layers.HybridEmbed, backbone=stem),
        embed_dim=net.embed_dim, depth=len(net.blocks), num_heads=net.blocks[0].attn.num_heads,
        mlp_ratio=net.blocks[0].mlp.fc1.out_features / net.embed_dim).eval()
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=generator) * 0.3 if v.is_floating_point() else v
             for k, v in net.state_dict().items()}
    state = {k: v.abs() + 0.1 if k.endswith("running_var") else v for k, v in state.items()}
    reference.load_state_dict(state, strict=True)
    ours = build_random("embedded_vit", device="cpu").module
    ours.load_state_dict(state, strict=True)
    x = dataset.tensors(TEST_SEED, 2)[0]
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    assert net.num_prefix_tokens == reference.num_prefix_tokens == 1
    assert net.patch_embed.grid_size == reference.patch_embed.grid_size == (8, 8)
    assert model.default_layer == f"blocks.{len(net.blocks) - 1}.norm1"


def test_vit_attention_goes_through_scaled_dot_product_attention(monkeypatch):
    """Attention rollout observes this one call: one call per block, on B×heads×(1+N)×head_dim queries."""
    net = build_random("embedded_vit", device="cpu").module
    seen = []
    original = torch.nn.functional.scaled_dot_product_attention

    def observed(q, k, v, *args, **kwargs):
        seen.append(q.shape)
        return original(q, k, v, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", observed)
    with torch.no_grad():
        net(torch.zeros(2, 3, dataset.IMAGE_SIZE, dataset.IMAGE_SIZE))
    attn = net.blocks[0].attn
    assert seen == [(2, attn.num_heads, 1 + net.patch_embed.num_patches, attn.head_dim)] * len(net.blocks)
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())


@pytest.mark.parametrize("name", NAMES[1:])
def test_user_checkpoint_of_another_size_loads(name):
    """Classes and widths are read back from the state dict (a user retrained a narrower variant)."""
    arch = {"embedded_vgg": {"width": 8, "hidden": 32}, "embedded_resnet": {"width": 8},
            "embedded_vit": {"embed_dim": 32, "depth": 2, "mlp_dim": 48}}[name]
    net = ARCHITECTURES[name].build(num_classes=3, **arch).eval()
    buffer = io.BytesIO()
    torch.save({"state_dict": net.state_dict()}, buffer)
    model = load_model(name, checkpoint=buffer.getvalue(), device="cpu")
    x = dataset.tensors(TEST_SEED, 2)[0]
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), net(x), rtol=0, atol=0)
    assert model.num_classes == 3 and model.categories == ["class 0", "class 1", "class 2"]
