"""Transformers in the method set: token and channels-last layouts, the CAM family on a ViT's token
grid and a Swin stage, attention rollout, and the zoo's torchvision ViT and Swin.

- ``instrument.layout`` on hand-built tensors: each layout's map is the known feature map, and
  ``from_map`` inverts it; facts are read from the model or inferred.
- The CAM family on a token grid (timm ViT and DeiT, torchvision ViT, the embedded ViT) equals
  pytorch-grad-cam with the ``reshape_transform`` its users hand-write, and on a Swin stage (NHWC)
  the same with a permutation.
- Every CAM on a token or NHWC layer equals the same CAM on that layer exposed as an NCHW map by
  an explicit rearrangement inside the model, including the methods that write a feature map
  back into the network (Ablation-CAM).
- Attention rollout equals a direct reference: each layer's attention recomputed from its qkv
  weights in float64 and rolled out by hand, on models whose attention runs through
  ``scaled_dot_product_attention`` (timm, embedded) and ``nn.MultiheadAttention`` (torchvision).

Random weights everywhere (no download); the models are tiny except the zoo's vit_b_16 and swin_t.
"""
from __future__ import annotations

import copy
import dataclasses
import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xai_core.errors import ParameterError
from xai_core.instrument.layout import NCHW, NHWC, TOKENS, Layout, declared_tokens, layer_layout, token_grid
from xai_core.methods import explain
from xai_core.model_handle import LoadedModel
from xai_core.models import build_random

PARITY_TOL = 1e-5
GRADIENT_CAMS = ["gradcam", "gradcampp", "xgradcam", "hirescam", "layercam"]
EVERY_CAM = GRADIENT_CAMS + ["scorecam", "faster_scorecam", "eigencam", "ablationcam"]


def min_max(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return (a - a.min()) / (a.max() - a.min())


def sharpened(module: nn.Module) -> nn.Module:
    """``module`` with its query/key weights scaled up, so random attention is far from uniform and its
    maps far from flat (a wrong grid or prefix would then show); logits also leave zero."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("qkv.weight", "in_proj_weight")):
                p.mul_(12)
            elif name.endswith(("head.weight", "heads.head.weight")):
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
    return module.eval()


# ----------------------------------------------------------------------- models
def timm_vit(**kwargs) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    return sharpened(VisionTransformer(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=3,
                                       num_classes=5, **kwargs))


def timm_deit() -> nn.Module:
    from timm.models.deit import VisionTransformerDistilled
    torch.manual_seed(0)
    return sharpened(VisionTransformerDistilled(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=3,
                                                num_classes=5))


def torchvision_vit() -> nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    return sharpened(VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                       mlp_dim=32, num_classes=5))


def torchvision_swin() -> nn.Module:
    from torchvision.models.swin_transformer import SwinTransformer
    torch.manual_seed(0)
    return sharpened(SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                                     window_size=[4, 4], num_classes=5))


TINY = {"timm_vit": timm_vit, "timm_deit": timm_deit, "torchvision_vit": torchvision_vit,
        "torchvision_swin": torchvision_swin,
        "timm_vit_pooled": lambda: timm_vit(class_token=False, global_pool="avg")}  # no class token


@functools.cache
def tiny(name: str) -> LoadedModel:
    """One shared instance per model, as the session fixtures (methods never modify a model)."""
    return LoadedModel.from_module(TINY[name](), input_size=32, num_classes=5, name=name)


@pytest.fixture(scope="module")
def x32() -> torch.Tensor:
    return torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(2))


# ----------------------------------------------------------------------- layout
def test_channels_first_and_channels_last_maps():
    fmap = torch.randn(2, 5, 3, 3)
    assert Layout(NCHW, (3, 3)).to_map(fmap) is fmap
    channels_last = Layout(NHWC, (3, 3))
    torch.testing.assert_close(channels_last.to_map(fmap.permute(0, 2, 3, 1)), fmap, rtol=0, atol=0)
    torch.testing.assert_close(channels_last.from_map(fmap, fmap.permute(0, 2, 3, 1)), fmap.permute(0, 2, 3, 1),
                               rtol=0, atol=0)


@pytest.mark.parametrize("prefix, grid", [(0, (4, 4)), (1, (3, 3)), (2, (2, 3)), (5, (4, 4))])
def test_tokens_map_to_their_grid_and_back_with_the_prefix_kept(prefix, grid):
    """Patch tokens are row-major over the grid (a strided conv's ``flatten(2).transpose(1, 2)``)."""
    fmap = torch.randn(2, 7, *grid)
    prefix_tokens = torch.randn(2, prefix, 7)
    tokens = torch.cat([prefix_tokens, fmap.flatten(2).transpose(1, 2)], dim=1)
    layout = Layout(TOKENS, grid, prefix)
    torch.testing.assert_close(layout.to_map(tokens), fmap, rtol=0, atol=0)
    torch.testing.assert_close(layout.from_map(fmap, tokens), tokens, rtol=0, atol=0)
    copies = torch.randn(4, 2, 7, *grid)  # leading dimensions (gradients T×B×…, ablated copies) broadcast
    torch.testing.assert_close(layout.from_map(copies, tokens)[:, :, :prefix], prefix_tokens.expand(4, -1, -1, -1))


def test_gradients_map_like_the_output():
    """∂s/∂(feature map) is the layout's map of ∂s/∂(output): the prefix tokens' gradient is dropped."""
    layout = Layout(TOKENS, (2, 2), 1)
    tokens = torch.randn(1, 5, 3, requires_grad=True)
    weight = torch.randn(1, 3, 2, 2)
    (grad,) = torch.autograd.grad((layout.to_map(tokens) * weight).sum() + tokens[:, 0].sum(), tokens)
    torch.testing.assert_close(layout.to_map(grad), weight, rtol=0, atol=0)


def test_token_facts_are_read_from_the_model_else_inferred():
    assert declared_tokens(timm_deit()) == (2, (4, 4))
    assert declared_tokens(torchvision_vit()) == (1, (4, 4))
    assert declared_tokens(nn.Linear(2, 2)) is None
    assert token_grid(timm_vit(reg_tokens=4), 21) == (5, (4, 4))     # class + 4 register tokens
    assert token_grid(nn.Identity(), 50) == (1, (7, 7))
    assert token_grid(nn.Identity(), 198) == (2, (14, 14))
    assert token_grid(nn.Identity(), 196) == (0, (14, 14))


def test_four_dimensional_outputs_are_channels_first_unless_only_a_channels_last_grid_fits():
    class ChannelsLastModel(nn.Module):
        output_fmt = "NHWC"

    plain, channels_last = nn.Identity(), ChannelsLastModel()
    assert layer_layout(plain, nn.Identity(), torch.zeros(1, 8, 4, 4), "a") == Layout(NCHW, (4, 4))
    assert layer_layout(plain, nn.Identity(), torch.zeros(1, 4, 4, 8), "a") == Layout(NHWC, (4, 4))
    cube = torch.zeros(1, 4, 4, 4)  # ambiguous: the module type, then the model's declaration decide
    assert layer_layout(channels_last, nn.LayerNorm(4), cube, "a").kind == NHWC
    assert layer_layout(channels_last, nn.Conv2d(4, 4, 1), cube, "a").kind == NCHW
    assert layer_layout(plain, nn.LayerNorm(4), cube, "a").kind == NCHW
    with pytest.raises(ParameterError, match="not a feature map or a sequence of tokens"):
        layer_layout(plain, nn.Identity(), torch.zeros(1, 10), "head")


@pytest.mark.parametrize("name, default", [("timm_vit", "blocks.1.norm1"), ("timm_deit", "blocks.1.norm1"),
                                           ("torchvision_vit", "encoder.layers.encoder_layer_1.ln_1"),
                                           ("timm_vit_pooled", "blocks.1")])
def test_token_layers_are_offered_and_the_default_is_the_last_blocks_first_norm(name, default):
    """After the last block's attention the patch tokens no longer reach the class token (a head that
    pools every token reads the last block's output)."""
    model = tiny(name)
    assert model.default_layer == default and default in model.conv_layers()
    assert "blocks.1" in model.conv_layers() or "encoder.layers.encoder_layer_1" in model.conv_layers()


# ------------------------------------------------------- CAMs vs pytorch-grad-cam
def pgc_maps(method: str, model: LoadedModel, layer: str, x: torch.Tensor, targets: list[int],
             reshape_transform) -> list[np.ndarray]:
    """pytorch-grad-cam's min-max normalised maps, one call per target, on a private copy (it calls
    ``.backward()``)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    reference = {"gradcam": pgc.GradCAM, "gradcampp": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
                 "hirescam": pgc.HiResCAM, "layercam": pgc.LayerCAM}[method]
    net = copy.deepcopy(model.module)
    maps = []
    for target in targets:
        with reference(net, [net.get_submodule(layer)], reshape_transform=reshape_transform) as cam:
            maps.append(cam(x[None].clone(), [ClassifierOutputTarget(target)])[0])
    return maps


def vit_reshape_transform(prefix: int, side: int):
    """pytorch-grad-cam's ViT tutorial transform, written by hand for this model's grid and prefix."""
    def reshape_transform(tensor: torch.Tensor) -> torch.Tensor:
        result = tensor[:, prefix:, :].reshape(tensor.size(0), side, side, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)
    return reshape_transform


def swin_reshape_transform(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.permute(0, 3, 1, 2)


# model -> (input side, layer, pytorch-grad-cam's reshape_transform). Swin's stage output feeds a LayerNorm,
# which is scale-invariant: Σ_k ∂y/∂A_k · A_k = 0 there, so HiResCAM is float32 rounding on it; its patch
# merging output (NHWC, before the next stage's residual) is not.
CASES = {
    "timm_vit": (32, "blocks.1.norm1", vit_reshape_transform(1, 4)),
    "timm_deit": (32, "blocks.1.norm1", vit_reshape_transform(2, 4)),
    "torchvision_vit": (32, "encoder.layers.encoder_layer_1.ln_1", vit_reshape_transform(1, 4)),
    "torchvision_swin": (32, "features.2", swin_reshape_transform),
    "embedded_vit": (64, "blocks.3.norm1", vit_reshape_transform(1, 8)),
}


@pytest.mark.parametrize("method", GRADIENT_CAMS)
@pytest.mark.parametrize("case", list(CASES))
def test_gradient_cams_on_token_grids_match_pytorch_grad_cam_with_its_reshape_transform(
        request, case, method, x32, image64):
    side, layer, reshape_transform = CASES[case]
    model = request.getfixturevalue("embedded_vit_random") if case == "embedded_vit" else tiny(case)
    x = image64 if side == 64 else x32
    every_class = explain(model, x, method, list(range(model.num_classes)), {"layer": layer})
    ours = [r for r in every_class if np.ptp(r.map) > 0][:2]  # on random weights a ReLU may leave a map flat
    assert len(ours) == 2
    theirs = pgc_maps(method, model, layer, x, [r.target for r in ours], reshape_transform)
    for res, ref in zip(ours, theirs):
        assert res.map.shape == ref.shape
        difference = np.abs(min_max(res.map) - min_max(ref)).max()
        assert difference <= PARITY_TOL, f"{method} on {case}: max difference {difference:.2e}"


class TokensAsMap(nn.Module):
    """``inner`` whose output tokens pass, patch tokens only, through ``grid`` (an identity) as an
    explicit NCHW map: the layer ``grid`` is what a token layout should make of ``inner``."""

    def __init__(self, inner: nn.Module, prefix: int, side: int):
        super().__init__()
        self.inner, self.prefix, self.side = inner, prefix, side
        self.grid = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.inner(x)
        patches = tokens[:, self.prefix:].reshape(len(tokens), self.side, self.side, -1).permute(0, 3, 1, 2)
        back = self.grid(patches).permute(0, 2, 3, 1).reshape(len(tokens), self.side * self.side, -1)
        return torch.cat([tokens[:, :self.prefix], back], dim=1)


class ChannelsLastAsMap(nn.Module):
    """``inner`` (N×h×w×K) passed through ``grid`` (an identity) as an explicit NCHW map."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.grid = inner, nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.grid(self.inner(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


@pytest.mark.parametrize("method", EVERY_CAM)
@pytest.mark.parametrize("case", ["embedded_vit", "torchvision_swin"])
def test_every_cam_on_a_token_or_channels_last_layer_equals_it_on_the_explicit_map(
        request, case, method, x32, image64):
    if case == "embedded_vit":
        model, x = request.getfixturevalue("embedded_vit_random"), image64
        net = copy.deepcopy(model.module)
        net.blocks[3].norm1 = TokensAsMap(net.blocks[3].norm1, prefix=1, side=8)
        layer = "blocks.3.norm1"
    else:
        model, x = tiny(case), x32
        net = copy.deepcopy(model.module)
        net.features[3] = ChannelsLastAsMap(net.features[3])
        layer = "features.3"
    exposed = dataclasses.replace(model, module=net)
    params = {"max_n": 8} if method == "faster_scorecam" else {}
    every_class = list(range(model.num_classes))
    ours = explain(exposed, x, method, every_class, {"layer": layer, **params})
    explicit = explain(exposed, x, method, every_class, {"layer": f"{layer}.grid", **params})
    assert sum(np.ptp(ref.map) > 0 for ref in explicit) >= 2  # on random weights a ReLU may leave a map flat
    # Ablation-CAM's weights are relative differences of close logits, so the float32 rounding of the two
    # paths' kernels shows (measured: 3e-6 of the largest map on the embedded ViT); the others were bit-identical.
    scale = max(np.abs(ref.map).max() for ref in explicit) * (1e-5 if method == "ablationcam" else 1e-6)
    for res, ref in zip(ours, explicit):
        np.testing.assert_allclose(res.map, ref.map, rtol=1e-5, atol=scale)


def test_deconvnet_projections_read_a_token_layer_through_its_layout(embedded_vit_random, image64):
    from xai_core.zeiler_fergus import deconv_projections
    result = deconv_projections(embedded_vit_random, image64, "blocks.3.norm1", top=3)
    assert result.feature_maps.shape == (3, 8, 8) and result.relu_calls == 0
    assert result.projections.shape == (3, 64, 64, 3) and np.isfinite(result.projections).all()


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "guided_gradcam"])
def test_relu_rules_refuse_a_gelu_transformer(embedded_vit_random, image64, method):
    with pytest.raises(ParameterError, match="no ReLU"):
        explain(embedded_vit_random, image64, method, [0, 1])


# --------------------------------------------------------------- attention rollout
def reference_attentions(module: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """Each block's attention probabilities (heads×T×T, float64), recomputed from its norm and qkv
    weights on the tokens that enter it; the blocks themselves are run for the next block's input."""
    torchvision = hasattr(module, "encoder")
    blocks = list(module.encoder.layers if torchvision else module.blocks)
    entering = []
    handle = blocks[0].register_forward_pre_hook(lambda _m, args: entering.append(args[0]))
    try:
        with torch.no_grad():
            module(x[None])
    finally:
        handle.remove()
    tokens, attentions = entering[0], []
    with torch.no_grad():
        for block in blocks:
            if torchvision:
                normed, heads = block.ln_1(tokens), block.self_attention.num_heads
                qkv = F.linear(normed, block.self_attention.in_proj_weight, block.self_attention.in_proj_bias)
            else:
                normed, heads = block.norm1(tokens), block.attn.num_heads
                qkv = block.attn.qkv(normed)
            q, k, _ = qkv.double()[0].chunk(3, dim=-1)                         # T×D each
            q, k = (t.reshape(len(t), heads, -1).transpose(0, 1) for t in (q, k))  # heads×T×d
            attentions.append((q @ k.transpose(1, 2) / q.shape[-1] ** 0.5).softmax(dim=-1).numpy())
            tokens = block(tokens)
    return attentions


def reference_rollout(attentions: list[np.ndarray], fusion: str, discard_ratio: float) -> np.ndarray:
    """Abnar & Zuidema's rollout by hand, with vit-explain's discarding (never entry (0, 0))."""
    size = attentions[0].shape[-1]
    result = np.eye(size)
    for attention in attentions:
        fused = {"mean": attention.mean(0), "max": attention.max(0), "min": attention.min(0)}[fusion].copy()
        flat = fused.reshape(-1)
        lowest = np.argsort(flat)[:int(flat.size * discard_ratio)]
        flat[lowest[lowest != 0]] = 0
        fused = fused + np.eye(size)
        result = (fused / fused.sum(axis=1, keepdims=True)) @ result
    return result


@pytest.mark.parametrize("fusion, discard_ratio", [("mean", 0.0), ("max", 0.5), ("min", 0.9)])
@pytest.mark.parametrize("case", ["embedded_vit", "timm_vit", "timm_deit", "torchvision_vit"])
def test_rollout_equals_the_direct_reference(request, case, fusion, discard_ratio, x32, image64):
    model = request.getfixturevalue("embedded_vit_random") if case == "embedded_vit" else tiny(case)
    x = image64 if case == "embedded_vit" else x32
    prefix, side = {"timm_deit": 2}.get(case, 1), 8 if case == "embedded_vit" else 4
    row = reference_rollout(reference_attentions(model.module, x), fusion, discard_ratio)[0, prefix:]
    expected = F.interpolate(torch.from_numpy(row).view(1, 1, side, side), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)[0, 0].numpy()
    [ours] = explain(model, x, "rollout", [0], {"head_fusion": fusion, "discard_ratio": discard_ratio})
    assert np.ptp(expected) > 0.05 * expected.mean()  # far from flat: a wrong grid or prefix would show
    np.testing.assert_allclose(ours.map, expected, rtol=1e-4, atol=1e-6)


def timm_swin() -> nn.Module:
    """timm's Swin with its window attention on the fused kernel (timm's default computes it by hand)."""
    from timm.models.swin_transformer import SwinTransformer, WindowAttention
    net = SwinTransformer(img_size=32, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1), num_heads=(1, 2),
                          num_classes=5).eval()
    for module in net.modules():
        if isinstance(module, WindowAttention):
            module.fused_attn = True
    return net


@pytest.mark.parametrize("build, reason", [
    (torchvision_swin, "has no attention computed by scaled_dot_product_attention"),
    (timm_swin, "attends within windows"),
    (TINY["timm_vit_pooled"], "has no class token"),
])
def test_rollout_refuses_models_without_global_attention_from_a_class_token(build, reason, x32):
    model = LoadedModel.from_module(build(), input_size=32, num_classes=5)
    with pytest.raises(ParameterError, match=reason):
        explain(model, x32, "rollout")


def test_rollout_refuses_a_cnn(embedded_random, image64):
    with pytest.raises(ParameterError, match="a CNN"):
        explain(embedded_random, image64, "rollout")


def test_the_recorder_leaves_torchvision_attention_unchanged(x32):
    """Under the recording mode nn.MultiheadAttention takes its functional path: same logits."""
    from xai_core.instrument.attention import recording_attention
    net = torchvision_vit()
    with torch.no_grad():
        plain = net(x32[None])
        with recording_attention() as attentions:
            recorded = net(x32[None])
    assert len(attentions) == 2 and attentions[0].shape == (1, 2, 17, 17)
    torch.testing.assert_close(recorded, plain, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------ the zoo's ViT and Swin
@pytest.mark.parametrize("name", ["vit_b_16", "swin_t"])
def test_torchvision_transformers_explain_at_their_default_layer(name):
    """Random weights; torchvision zero-initialises the ViT's head, so it is redrawn here."""
    model = build_random(name, num_classes=4, device="cpu")
    with torch.no_grad():
        head = model.module.heads.head if name == "vit_b_16" else model.module.head
        head.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    assert model.default_layer in model.conv_layers()
    x = torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(0))
    for result in explain(model, x, "gradcam", [0, 1]):
        assert result.map.shape == (224, 224) and np.isfinite(result.map).all() and np.ptp(result.map) > 0
    if name == "vit_b_16":  # (torchvision's Swin is refused: test_rollout_refuses_models_without_...)
        [rollout] = explain(model, x, "rollout")
        assert np.isfinite(rollout.map).all() and np.ptp(rollout.map) > 0
