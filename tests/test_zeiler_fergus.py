"""Zeiler & Fergus: occlusion (vs Captum, on a model that looks at one patch), DeconvNet, transformations."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import Occlusion
from torch import nn

from xai_core.errors import ParameterError
from xai_core.instrument.capture import hook_count
from xai_core.methods import explain
from xai_core.methods.occlusion import occlusion_sensitivity
from xai_core.replacements import REPLACEMENTS, replacement_image
from xai_core.model_handle import LoadedModel
from xai_core.zeiler_fergus import deconv_projections, transform_batch, transform_sensitivity, transform_values

PATCH = (slice(8, 16), slice(20, 28))  # rows, columns of a 32×32 input


def handle(module: nn.Module, size: int, classes: int, layer: str) -> LoadedModel:
    return LoadedModel.from_module(module, input_size=size, num_classes=classes, default_layer=layer)


class PatchNet(nn.Module):
    """A classifier whose logits depend only on the pixels of ``PATCH``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return 3 * self.head(F.relu(self.conv(x[:, :, PATCH[0], PATCH[1]])).flatten(1))


def small_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 5))


def test_occlusion_finds_the_patch_the_model_depends_on():
    torch.manual_seed(0)
    model, x = handle(PatchNet(), 32, 3, "conv"), torch.randn(3, 32, 32)
    maps = occlusion_sensitivity(model, x, 1, window=4, stride=4, fill="black", layer="conv")
    in_patch = np.zeros((32, 32), bool)
    in_patch[PATCH] = True
    assert np.abs(maps.drop_map[~in_patch]).max() < 1e-7
    assert np.abs(maps.drop_map[in_patch]).min() > 0
    # per occluder position (an 8×8 grid of 4-px squares): only those over the patch matter
    over = np.zeros((8, 8), bool)
    over[2:4, 5:7] = True
    assert np.allclose(maps.probability[~over], maps.base_probability, atol=1e-7)
    assert np.all(np.abs(maps.probability[over] - maps.base_probability) > 1e-6)
    intact = model.predict(x, 1)[0]["index"]
    assert np.all(maps.top_class[~over] == intact) and maps.top_class_names[intact] == f"class {intact}"
    activation = maps.feature_activation
    assert np.allclose(activation[~over], activation[0, 0]) and np.all(activation[over] != activation[0, 0])
    assert hook_count(model.module) == 0


@pytest.mark.parametrize("fill", REPLACEMENTS)
def test_occlusion_matches_captum(fill):
    model, x = handle(small_cnn(), 29, 5, "3"), torch.randn(3, 29, 29)
    window, stride = 6, 4  # 29 − 6 is not a multiple of 4: the last windows are cut at the border
    [ours] = explain(model, x, "occlusion", 2, {"window": window, "stride": stride, "fill": fill})
    baseline = replacement_image(model, x, fill).unsqueeze(0)
    theirs = Occlusion(lambda batch: model.module(batch).softmax(-1)).attribute(
        x.unsqueeze(0), sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
        baselines=baseline, target=2)[0].numpy()
    np.testing.assert_allclose(ours.attribution, theirs, atol=1e-7)
    np.testing.assert_allclose(ours.map, theirs[0], atol=1e-7)
    assert ours.extras["probability_grid"].shape == (7, 7)


def deconvnet_by_hand(net: nn.Sequential, x: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
    """Zeiler & Fergus's DeconvNet written out for ``small_cnn`` from the output of conv 2."""
    with torch.no_grad():
        a1 = F.relu(net[0](x.unsqueeze(0)))
        _, switches = F.max_pool2d(a1, 2, return_indices=True)
        r = F.conv_transpose2d(signal.unsqueeze(0), net[3].weight, padding=1)   # transposed conv 2
        r = F.max_unpool2d(r, switches, 2, output_size=a1.shape[-2:])         # unpooling with switches
        r = F.relu(r)                                                           # rectified backward signal
        return F.conv_transpose2d(r, net[0].weight, padding=1)[0]              # transposed conv 1


@pytest.mark.parametrize("mode", ["map", "max"])
def test_deconvnet_projection_follows_the_deconvnet_rule(mode):
    net = small_cnn(1)
    model, x = handle(net, 16, 5, "3"), torch.randn(3, 16, 16)
    proj = deconv_projections(model, x, "3", top=9, mode=mode)
    assert proj.projections.shape == (9, 16, 16, 3) and proj.display().dtype == np.uint8
    with torch.no_grad():
        fmap = net[3](net[2](net[1](net[0](x.unsqueeze(0)))))[0]
    strength = fmap.flatten(1).amax(1)
    assert proj.channels == strength.topk(9).indices.tolist()
    for row, channel in enumerate(proj.channels):
        signal = torch.zeros_like(fmap)
        if mode == "map":
            signal[channel] = fmap[channel]
        else:
            flat = signal[channel].view(-1)
            flat[fmap[channel].argmax()] = fmap[channel].max()
        expected = deconvnet_by_hand(net, x, signal).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(proj.projections[row], expected, rtol=1e-4, atol=1e-6)
    # the rule matters: the plain gradient (forward ReLU mask) differs
    xs = x.unsqueeze(0).requires_grad_(True)
    out = net[3](net[2](net[1](net[0](xs.clone()))))
    signal = torch.zeros_like(out)
    signal[0, proj.channels[0]] = out[0, proj.channels[0]].detach()
    (plain,) = torch.autograd.grad(out, xs, grad_outputs=signal)
    if mode == "map":
        assert not np.allclose(plain[0].permute(1, 2, 0).numpy(), proj.projections[0], atol=1e-4)
    assert hook_count(net) == 0


def test_rotation_curve_at_zero_equals_the_plain_prediction():
    model, x = handle(small_cnn(2), 24, 5, "3"), torch.randn(3, 24, 24)
    plain = model.predict(x, 5)
    for kind, values, identity in [("rotation", [-30, 0, 45, 90], 1), ("scale", [0.8, 1.0, 1.5], 1),
                                   ("shift_x", [-3, 0, 3], 1), ("shift_y", [0, 5], 0)]:
        curve = transform_sensitivity(model, x, kind, values, top=5)
        assert curve.classes == [p["index"] for p in plain]
        np.testing.assert_allclose(curve.probabilities[identity], [p["probability"] for p in plain], atol=1e-6)
        assert curve.predicted[identity] == plain[0]["index"]
        assert curve.probabilities.shape == (len(values), 5) and curve.images.shape == (len(values), 24, 24, 3)


def test_transformations_move_pixels_where_expected():
    x = torch.randn(3, 12, 12)
    rotated = transform_batch(x, "rotation", torch.tensor([90.0, -90.0]))
    # positive angles turn the image counter-clockwise on screen, as PIL and torchvision do
    assert torch.allclose(rotated[0], torch.rot90(x, 1, dims=(1, 2)), atol=1e-5)
    assert torch.allclose(rotated[1], torch.rot90(x, -1, dims=(1, 2)), atol=1e-5)
    shifted = transform_batch(x, "shift_x", torch.tensor([3.0]))[0]
    assert torch.allclose(shifted[:, :, 3:], x[:, :, :-3], atol=1e-5) and shifted[:, :, :3].abs().max() < 1e-5
    down = transform_batch(x, "shift_y", torch.tensor([2.0]))[0]
    assert torch.allclose(down[:, 2:], x[:, :-2], atol=1e-5)


def test_categorical_occlusion_map_has_a_legend_entry_in_each_present_class_colour():
    from ui.figures import categorical_map_figure

    classes = np.array([[3, 3], [7, 5]])
    fig = categorical_map_figure(np.zeros((8, 8, 3), np.uint8), classes, {3: "cat", 5: "dog", 7: "fox"},
                                 [0, 4], [0, 4], 4)
    heatmap = next(t for t in fig.data if t.type == "heatmap")
    legend = [t for t in fig.data if t.type == "scatter"]
    assert [t.name for t in legend] == ["cat (3)", "dog (5)", "fox (7)"]
    assert np.array_equal(np.asarray(heatmap.z), [[0, 0], [2, 1]])
    k = len(legend)
    for slot, entry in enumerate(legend):  # the colour the heatmap gives slot i is the legend's colour
        shown = [c for stop, c in heatmap.colorscale if stop <= (slot + 0.5) / k][-1]
        assert shown == entry.marker.color
    assert list(heatmap.x) == [1.5, 5.5]  # occluder centres


def test_transform_values_span_each_transformation_with_the_identity_in_the_middle():
    identity = {"rotation": 0.0, "scale": 1.0, "shift_x": 0.0, "shift_y": 0.0}
    for kind, neutral in identity.items():
        values = transform_values(kind, 5, 64)
        assert len(values) == 5 and values[2] == pytest.approx(neutral, abs=1e-12)
        assert (np.diff(values) > 0).all()
    assert transform_values("shift_x", 3, 64).tolist() == [-32.0, 0.0, 32.0]
    np.testing.assert_allclose(transform_values("scale", 3, 64), [0.5, 1.0, 2.0])  # log-spaced
    with pytest.raises(ParameterError, match="Transformation"):
        transform_values("shear", 3, 64)
