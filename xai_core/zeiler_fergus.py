"""Zeiler & Fergus (2014) experiments besides occlusion: DeconvNet projections and the
sensitivity of the prediction to rotation, scale and shift.

DeconvNet projection: keep one feature map of a layer (all of it, or only its strongest
activation), zero the others, and send it back to pixel space through the network. The
DeconvNet's unpooling with switches and transposed convolutions are exactly autograd's
backward of max-pooling and convolution; its rectification — ReLU applied to the backward
signal, ignoring the forward mask — is ``relu_backward_rule("deconvnet")``. The nine
chosen maps are projected together as the rows of one batch. The layer is read through its
layout (``instrument.layout``), so a Swin stage or a transformer's token grid projects too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .engine import Engine, Progress, oom_guard
from .errors import ParameterError
from .instrument.capture import capture
from .instrument.relu_rules import relu_backward_rule
from .model_handle import LoadedModel

PROJECTION_MODES = ("map", "max")
DECONV_TOP = 9          # feature maps projected (a 3×3 grid, as Zeiler & Fergus show them)
TRANSFORM_TOP = 5       # classes followed under a transformation
TRANSFORMS = {"rotation": "angle (degrees)", "scale": "scale factor", "shift_x": "horizontal shift (pixels)",
              "shift_y": "vertical shift (pixels)"}


@dataclass
class DeconvProjections:
    """The top feature maps of ``layer`` for one image and their pixel-space projections."""
    layer: str
    mode: str
    channels: list[int]           # feature-map indices, strongest first
    activations: np.ndarray       # K, max activation of each chosen map
    feature_maps: np.ndarray      # K×h×w, the chosen maps themselves
    projections: np.ndarray       # K×H×W×3 float32, signed projections (pixel space, channels last)
    relu_calls: int               # ReLUs that took the DeconvNet rule (0: the network has none)

    def display(self) -> np.ndarray:
        """K×H×W×3 uint8: each projection scaled by its own max |value| around mid-grey."""
        scale = np.abs(self.projections).reshape(len(self.channels), -1).max(1).clip(min=1e-12)
        img = 0.5 + 0.5 * self.projections / scale[:, None, None, None]
        return (img.clip(0, 1) * 255).round().astype(np.uint8)


def deconv_projections(model: LoadedModel, x: torch.Tensor, layer: str, *, top: int = DECONV_TOP,
                       mode: str = "map", engine: Engine | None = None) -> DeconvProjections:
    """Project the image's ``top`` strongest feature maps of ``layer`` back to pixel space.

    ``mode="map"`` sends the whole feature map back, ``"max"`` only its largest activation
    (Zeiler & Fergus's figures). Maps are ranked by their maximum activation on this image.
    """
    if mode not in PROJECTION_MODES:
        raise ParameterError(f"Projection mode must be one of {', '.join(PROJECTION_MODES)}; got '{mode}'.")
    if top < 1:
        raise ParameterError("At least one feature map must be projected.")
    with oom_guard(model.device, f"projecting feature maps of {layer}"):  # K copies of the image in one pass
        return _projections(model, x.to(model.device, torch.float32), layer, top, mode)


def _projections(model: LoadedModel, x: torch.Tensor, layer: str, top: int, mode: str) -> DeconvProjections:
    with torch.no_grad(), capture(model.module, layer, detach=True) as seen:
        model.module(x.unsqueeze(0))
    activation = seen.feature_map()[0].float()
    strength = activation.flatten(1).amax(1)
    k = min(top, activation.shape[0])
    channels = strength.topk(k).indices

    xs = x.unsqueeze(0).repeat(k, 1, 1, 1).requires_grad_(True)
    with relu_backward_rule("deconvnet") as rule, capture(model.module, layer) as seen:
        model.module(xs)  # fp32: the projections of deep layers are small differences
    layer_out, layout = seen.activation(), seen.layout()
    feature_maps = layout.to_map(layer_out.detach())
    signal = torch.zeros_like(feature_maps)
    rows = torch.arange(k, device=x.device)
    chosen = feature_maps[rows, channels]                             # K×h×w
    if mode == "max":
        flat = chosen.flatten(1)
        chosen = torch.zeros_like(flat).scatter_(1, flat.argmax(1, keepdim=True),
                                                 flat.amax(1, keepdim=True)).view_as(chosen)
    signal[rows, channels] = chosen
    signal = layout.from_map(signal, torch.zeros_like(layer_out))   # back to the layer's layout (prefix tokens: 0)
    (projection,) = torch.autograd.grad(layer_out, xs, grad_outputs=signal)
    return DeconvProjections(
        layer=layer, mode=mode, channels=[int(c) for c in channels], activations=strength[channels].cpu().numpy(),
        feature_maps=activation[channels].cpu().numpy(),
        projections=projection.permute(0, 2, 3, 1).float().cpu().numpy(), relu_calls=rule.relu_calls)


# ------------------------------------------------------------------ transformation sensitivity
@dataclass
class TransformSensitivity:
    """Probabilities of the intact image's top classes as the image is transformed."""
    kind: str
    values: np.ndarray            # V, the transformation parameter (see TRANSFORMS)
    classes: list[int]            # K, top classes of the untransformed image
    class_names: list[str]
    probabilities: np.ndarray     # V×K
    predicted: np.ndarray         # V, most probable class at each value
    images: np.ndarray            # V×H×W×3 uint8, the transformed inputs (for a strip of thumbnails)


def transform_values(kind: str, count: int, size: int) -> np.ndarray:
    """``count`` values of the transformation over its usual span: a full turn of rotation, scales
    from 0.5 to 2 (evenly spaced in log, so 1 is in the middle), shifts of up to half the image
    (``size`` pixels) either way."""
    spans = {"rotation": (-180.0, 180.0), "scale": (0.5, 2.0), "shift_x": (-size / 2, size / 2),
             "shift_y": (-size / 2, size / 2)}
    if kind not in spans:
        raise ParameterError(f"Transformation must be one of {', '.join(TRANSFORMS)}; got '{kind}'.")
    if count < 1:
        raise ParameterError("Give at least one transformation value.")
    return np.geomspace(*spans[kind], count) if kind == "scale" else np.linspace(*spans[kind], count)


def _affine_matrices(kind: str, values: torch.Tensor, size: int) -> torch.Tensor:
    """V×2×3 matrices mapping output to input coordinates in ``affine_grid``'s [-1, 1] frame."""
    v = values.float()
    eye = torch.eye(2, 3, device=v.device).repeat(len(v), 1, 1)
    if kind == "rotation":
        angle = v * math.pi / 180
        cos, sin = torch.cos(angle), torch.sin(angle)
        eye[:, 0, 0], eye[:, 0, 1], eye[:, 1, 0], eye[:, 1, 1] = cos, -sin, sin, cos
    elif kind == "scale":
        if (v <= 0).any():
            raise ParameterError("Scale factors must be positive.")
        eye[:, 0, 0] = eye[:, 1, 1] = 1 / v
    elif kind == "shift_x":
        eye[:, 0, 2] = -2 * v / size
    elif kind == "shift_y":
        eye[:, 1, 2] = -2 * v / size
    else:
        raise ParameterError(f"Transformation must be one of {', '.join(TRANSFORMS)}; got '{kind}'.")
    return eye


def transform_batch(x: torch.Tensor, kind: str, values: torch.Tensor) -> torch.Tensor:
    """V transformed copies of the normalised image C×H×W; uncovered pixels get the dataset
    mean (normalised zero), like a grey background."""
    _, h, w = x.shape
    # Built where ``values`` are (the host): the scale check then needs no device sync per batch.
    theta = _affine_matrices(kind, values, max(h, w)).to(x.device)
    grid = F.affine_grid(theta, [len(values), *x.shape], align_corners=False)
    return F.grid_sample(x.unsqueeze(0).expand(len(values), -1, -1, -1), grid, mode="bilinear",
                         padding_mode="zeros", align_corners=False)


def transform_sensitivity(model: LoadedModel, x: torch.Tensor, kind: str, values, *, top: int = TRANSFORM_TOP,
                          engine: Engine | None = None, progress: Progress | None = None) -> TransformSensitivity:
    """Top-class probabilities against rotation angle, scale or shift, evaluated in batches."""
    values = torch.as_tensor(np.asarray(values, dtype=np.float32))
    if values.dim() != 1 or len(values) == 0:
        raise ParameterError("Give at least one transformation value.")
    engine = engine or Engine(model.device)
    x = x.to(model.device, torch.float32)
    classes = [p["index"] for p in model.predict(x, top)]
    index = torch.as_tensor(classes, device=x.device)
    _affine_matrices(kind, values, x.shape[-1])  # validates the kind and values before any work

    @torch.no_grad()
    def evaluate(start: int, stop: int) -> torch.Tensor:
        batch = transform_batch(x, kind, values[start:stop])
        probs = model.module(batch).float().softmax(-1)
        return torch.cat([probs[:, index], probs.argmax(-1, keepdim=True).float()], dim=1)

    # fp32 like ``model.predict``, so that the identity transform gives the plain prediction
    out = engine.map_cat(evaluate, len(values), section="score_difference", key=f"transform:{model.name}:{x.shape[-1]}",
                         item_bytes=x.numel() * 4 * 8, progress=progress, message=kind).cpu()
    with torch.no_grad(), oom_guard(model.device, f"the {len(values)} transformed images"):
        shown = model.denormalize(transform_batch(x, kind, values).float()).permute(0, 2, 3, 1).cpu().numpy()
    return TransformSensitivity(
        kind=kind, values=values.numpy(), classes=classes, class_names=[model.categories[c] for c in classes],
        probabilities=out[:, :len(classes)].numpy(), predicted=out[:, -1].long().numpy(),
        images=(shown * 255).round().astype(np.uint8))
