"""The CAM family on its shared pipeline: LayerCAM, Eigen-CAM, XGrad-CAM, HiResCAM and Ablation-CAM
match pytorch-grad-cam, obey their closed forms on a GAP + linear head, give several targets
from one call as one call each, and leave no hook behind, even when they fail or run in two
threads at once.

pytorch-grad-cam min-max normalises its maps (and resizes them with OpenCV's half-pixel bilinear
``resize``, our upsampling), so parity is checked after min-max. It is called once per target
with a batch of one image, the arithmetic of our single forward pass: with the image repeated
once per target in one batch, float32 rounding differs by up to ~5e-6.
"""
import copy
import dataclasses
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xai_core.engine import Engine
from xai_core.errors import ParameterError
from xai_core.instrument.capture import capture, hook_count
from xai_core.methods import explain, list_methods
from xai_core.methods.cam_pipeline import gradient_cam_maps
from xai_core.methods.eigencam import oriented_principal_projection
from xai_core.methods.hirescam import gradient_times_activation_map

TARGETS = [1, 4]  # maps that are not flat after the ReLU on both random models
PARITY_TOL = 1e-5
NEW_CAMS = ["xgradcam", "hirescam", "layercam", "eigencam", "ablationcam"]


def min_max(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return (a - a.min()) / (a.max() - a.min())


def reference_class(method: str):
    import pytorch_grad_cam as pgc
    return {"xgradcam": pgc.XGradCAM, "hirescam": pgc.HiResCAM, "layercam": pgc.LayerCAM,
            "eigencam": pgc.EigenCAM, "ablationcam": pgc.AblationCAM}[method]


def pgc_maps(method: str, model, layer: str, x: torch.Tensor, targets: list[int]) -> list[np.ndarray]:
    """pytorch-grad-cam's min-max normalised maps, one call (batch of one) per target.

    It runs on a private copy: its ``.backward()`` would leave gradients on the shared test model."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    maps = []
    net = copy.deepcopy(model.module)
    for target in targets:
        with reference_class(method)(net, [net.get_submodule(layer)]) as cam:
            maps.append(cam(x[None].clone(), [ClassifierOutputTarget(target)])[0])
    return maps


def case(request, model_fixture: str, method: str, image64: torch.Tensor):
    """(model, layer, input): ResNet-18 at layer3 (4×4 maps) and the embedded net at its default
    layer (16×16). Ablation-CAM makes one forward pass per channel (twice, in float64 too): ResNet-18's
    64-channel layer1 on a 16 px crop (4×4 maps) and the embedded net on a 32 px crop (8×8)."""
    model = request.getfixturevalue(model_fixture)
    if model_fixture == "embedded_random":
        return model, model.default_layer, image64[:, :32, :32] if method == "ablationcam" else image64
    if method == "ablationcam":
        return model, "layer1", image64[:, :16, :16]
    return model, "layer3", image64


class Float64(nn.Module):
    """A float64 copy of a network behind a cast of its (float32) input."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = copy.deepcopy(net).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.double())


def in_float64(model, layer: str):
    """(the model in float64, the layer's name in it)."""
    return dataclasses.replace(model, module=Float64(model.module), default_layer=f"net.{model.default_layer}"), \
        f"net.{layer}"


def oriented_like_ours(activation_batch: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's projection, flipped where it anti-correlates with the channel mean (our convention)."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
    projections = get_2d_projection(activation_batch)
    for projection, activation in zip(projections, activation_batch):
        channel_mean = activation.mean(axis=0)
        if (projection * (channel_mean - channel_mean.mean())).sum() < 0:
            projection *= -1
    return projections


# ---------------------------------------------------------------------- parity
@pytest.mark.parametrize("model_fixture", ["resnet_random", "embedded_random"])
@pytest.mark.parametrize("method", NEW_CAMS)
def test_matches_pytorch_grad_cam_after_min_max(request, model_fixture, method, image64, monkeypatch):
    """Ablation-CAM is compared in float64: its weights are relative differences of nearly equal logits,
    and on random weights (logits ~0.05) float32 rounding alone moves either implementation by up to
    3e-5 after min-max (``test_ablationcam_in_float32_is_within_its_rounding_of_pytorch_grad_cam``)."""
    model, layer, x = case(request, model_fixture, method, image64)
    if method == "ablationcam":
        model, layer = in_float64(model, layer)
    if method == "eigencam":  # the sign of the principal component is arbitrary: compare with ours fixed
        import pytorch_grad_cam.eigen_cam
        monkeypatch.setattr(pytorch_grad_cam.eigen_cam, "get_2d_projection", oriented_like_ours)
    ours = explain(model, x, method, TARGETS, {"layer": layer})
    theirs = pgc_maps(method, model, layer, x, TARGETS[:1] if method == "eigencam" else TARGETS)
    for res, ref in zip(ours, theirs):
        assert res.map.shape == ref.shape and np.ptp(res.map) > 0
        difference = np.abs(min_max(res.map) - min_max(ref)).max()
        assert difference <= PARITY_TOL, f"{method} on {model.name}: max difference {difference:.2e}"


@pytest.mark.parametrize("model_fixture", ["resnet_random", "embedded_random"])
def test_ablationcam_in_float32_is_within_its_rounding_of_pytorch_grad_cam(request, model_fixture, image64):
    """Each drop is taken against an intact copy in the same batch (ours) or a separate pass (theirs);
    measured: 1.7e-5 (ResNet-18), 3.2e-5 (embedded), each of the two up to 3e-5 from float64."""
    model, layer, x = case(request, model_fixture, "ablationcam", image64)
    ours = explain(model, x, "ablationcam", TARGETS, {"layer": layer})
    for res, ref in zip(ours, pgc_maps("ablationcam", model, layer, x, TARGETS)):
        assert np.abs(min_max(res.map) - min_max(ref)).max() <= 1e-4


@pytest.mark.parametrize("model_fixture", ["resnet_random", "embedded_random"])
def test_eigencam_differs_from_pytorch_grad_cam_only_by_the_sign_of_the_component(request, model_fixture):
    """Unpatched, pytorch-grad-cam's projection is ours or its negation (LAPACK's sign)."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
    model = request.getfixturevalue(model_fixture)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad(), capture(model.module, model.default_layer, detach=True) as seen:
        model.module(x)
    activation = seen.activation()
    ours, share = oriented_principal_projection(activation[0])
    theirs = torch.from_numpy(get_2d_projection(activation.numpy())[0])
    scale = ours.abs().max()
    assert min((ours - theirs).abs().max(), (ours + theirs).abs().max()) <= PARITY_TOL * scale
    assert 0 < float(share) <= 1


# ---------------------------------------------------------------- closed forms
def gap_head(model, x):
    """(activation K×h×w at the default layer, final linear weight, logits): the layer is followed
    by a global average pool and the final linear layer on both test models."""
    with torch.no_grad(), capture(model.module, model.default_layer, detach=True) as seen:
        logits = model.module(x[None])[0]
    activation = seen.activation()[0]
    fc = model.module.fc
    return activation, fc.weight.detach(), logits


def upsampled(maps: torch.Tensor, side: int) -> np.ndarray:
    return F.interpolate(maps[:, None], size=(side, side), mode="bilinear", align_corners=False)[:, 0].numpy()


@pytest.mark.parametrize("model_fixture", ["resnet_random", "embedded_random"])
def test_on_a_gap_linear_head_xgradcam_and_hirescam_are_gradcam(request, model_fixture, image64):
    """The gradient is W_tk / (h·w) everywhere: HiResCAM's element-wise product sums to Grad-CAM, and
    XGrad-CAM's activation-weighted mean of a constant gradient is that constant (up to ε = 1e-7)."""
    model = request.getfixturevalue(model_fixture)
    grad_cam = [r.map for r in explain(model, image64, "gradcam", TARGETS)]
    for method in ("xgradcam", "hirescam"):
        for res, expected in zip(explain(model, image64, method, TARGETS), grad_cam):
            np.testing.assert_allclose(res.map, expected, rtol=1e-4, atol=1e-6 * expected.max())


@pytest.mark.parametrize("model_fixture", ["resnet_random", "embedded_random"])
def test_hirescam_before_the_relu_sums_to_the_score_minus_the_bias(request, model_fixture, image64):
    """HiResCAM's faithfulness: the score is affine in the activation, Σ_ij Σ_k g A = y − b."""
    model = request.getfixturevalue(model_fixture)
    _, _, logits = gap_head(model, image64)
    maps = gradient_cam_maps(model, image64, TARGETS, model.default_layer, engine=Engine("cpu"),
                             layer_map=gradient_times_activation_map)
    expected = logits[TARGETS] - model.module.fc.bias[TARGETS].detach()
    torch.testing.assert_close(maps.sum(dim=(1, 2)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_fixture", ["resnet_random", "embedded_random"])
def test_on_a_gap_linear_head_layercam_keeps_the_positive_weights(request, model_fixture, image64):
    """LayerCAM = ReLU(Σ_k ReLU(W_tk) A_k) / (h·w) there."""
    model = request.getfixturevalue(model_fixture)
    activation, weight, _ = gap_head(model, image64)
    cells = activation.shape[1] * activation.shape[2]
    expected = torch.einsum("tk,khw->thw", weight[TARGETS].clamp(min=0), activation).clamp(min=0) / cells
    ours = np.stack([r.map for r in explain(model, image64, "layercam", TARGETS)])
    np.testing.assert_allclose(ours, upsampled(expected, 64), rtol=1e-4, atol=1e-7)


def test_on_a_gap_linear_head_ablationcam_weights_are_the_channel_contributions(embedded_random, image64):
    """Zeroing channel k lowers the logit by W_tk · mean(A_k): w_tk = W_tk mean(A_k) / y_t."""
    activation, weight, logits = gap_head(embedded_random, image64)
    weights = weight[TARGETS] * activation.mean(dim=(1, 2)) / logits[TARGETS, None]
    expected = torch.einsum("tk,khw->thw", weights, activation).clamp(min=0)
    ours = np.stack([r.map for r in explain(embedded_random, image64, "ablationcam", TARGETS)])
    np.testing.assert_allclose(ours, upsampled(expected, 64), rtol=1e-3, atol=1e-4 * ours.max())


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_eigencam_of_a_rank_one_activation_is_its_spatial_pattern_oriented_by_the_channel_mean(direction):
    """A_k = c_k u + b_k: the centred activation is rank one, its component is ±(u − ū), and the
    convention picks the sign that correlates with mean_k A = mean(c) u + const."""
    generator = torch.Generator().manual_seed(2)
    u = torch.rand(5, 6, generator=generator)
    c = direction * (0.5 + torch.rand(7, generator=generator))
    activation = c.view(-1, 1, 1) * u + torch.rand(7, 1, 1, generator=generator)
    projection, share = oriented_principal_projection(activation)
    expected = direction * (u - u.mean()) * c.norm()
    torch.testing.assert_close(projection, expected, rtol=1e-4, atol=1e-5)
    assert float(share) == pytest.approx(1.0, abs=1e-5)


def test_eigencam_is_one_map_whatever_the_target(embedded_random, image64):
    [a, b] = explain(embedded_random, image64, "eigencam", TARGETS)
    np.testing.assert_array_equal(a.map, b.map)
    assert [a.target, b.target] == TARGETS and np.ptp(a.map) > 0


def test_eigencam_refuses_one_by_one_maps(resnet_random, image64):
    with pytest.raises(ParameterError, match="1×1"):
        explain(resnet_random, image64, "eigencam", 0, {"layer": "avgpool"})


def test_ablationcam_does_not_depend_on_the_batch_size(embedded_random, image64):
    """Up to float32 rounding, which depends on the batch size and is magnified by the weights being
    differences of close logits (4e-5 of the map's maximum here); a channel mixed up would be O(1)."""
    x = image64[:, :32, :32]
    [a] = explain(embedded_random, x, "ablationcam", TARGETS[0], engine=Engine("cpu", batch_size=32))
    [b] = explain(embedded_random, x, "ablationcam", TARGETS[0], engine=Engine("cpu", batch_size=5))
    np.testing.assert_allclose(a.map, b.map, rtol=0, atol=1e-3 * a.map.max())


# ------------------------------------------------ targets, threads and hooks
@pytest.mark.parametrize("method", NEW_CAMS)
def test_several_targets_from_one_call_equal_one_call_each(embedded_random, image64, method):
    x = image64[:, :32, :32]  # 8×8 maps: Ablation-CAM runs three times
    both = explain(embedded_random, x, method, TARGETS)
    for res in both:
        [alone] = explain(embedded_random, x, method, res.target)
        np.testing.assert_allclose(res.map, alone.map, rtol=1e-4, atol=1e-5 * alone.map.max())
    if method != "eigencam":
        assert not np.allclose(both[0].map, both[1].map)


@pytest.mark.parametrize("method,fail_at", [(m, 1) for m in NEW_CAMS] + [("ablationcam", 2)])
def test_no_hook_left_even_when_the_forward_pass_fails(embedded_random, image64, method, fail_at):
    """Fail at the layer in the ``fail_at``-th forward pass (Eigen-CAM's forward stops at the layer),
    after the method's hooks are set: pass 2 is Ablation-CAM's first ablated batch."""
    model = embedded_random.module

    class Boom(Exception):
        pass

    calls = 0

    def fail(*_):
        nonlocal calls
        calls += 1
        if calls == fail_at:
            raise Boom

    handle = model.get_submodule(embedded_random.default_layer).register_forward_pre_hook(fail)
    try:
        with pytest.raises(Boom):
            explain(embedded_random, image64, method, TARGETS)
    finally:
        handle.remove()
    assert hook_count(model) == 0 and calls == fail_at


def test_two_threads_sharing_the_model_get_the_maps_they_get_alone(embedded_random, image64):
    """Ablation-CAM's output-replacing hook must not touch another thread's forward passes (nor theirs its)."""
    x = image64[:, :32, :32]
    others = [("hirescam", 4), ("eigencam", 1), ("layercam", 1)]
    alone = {job: explain(embedded_random, x, *job)[0].map for job in [("ablationcam", 1), *others]}
    barrier, ablation_done = threading.Barrier(2), threading.Event()
    failures, rounds = [], []

    def check(job):
        if not np.allclose(explain(embedded_random, x, *job)[0].map, alone[job], rtol=1e-5, atol=1e-7):
            failures.append(job)

    def ablation():
        barrier.wait()
        check(("ablationcam", 1))
        ablation_done.set()

    def gradients_meanwhile():
        barrier.wait()
        while not ablation_done.is_set() or not rounds:
            for job in others:
                check(job)
            rounds.append(1)

    threads = [threading.Thread(target=ablation), threading.Thread(target=gradients_meanwhile)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and hook_count(embedded_random.module) == 0


def test_every_cam_declares_its_layer_widget_and_reference():
    cams = list_methods("cam")
    assert set(NEW_CAMS) <= {m.name for m in cams}
    for method in cams:
        assert method.uses_layer and method.params["layer"].widget == "layer" and method.reference
    assert [m.name for m in cams if m.class_agnostic] == ["eigencam"]
