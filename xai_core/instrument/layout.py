"""How a layer's output becomes an N×K×h×w feature map, and back.

The CAM family, Score-CAM, Eigen-CAM, Ablation-CAM, occlusion's feature channel and the
DeconvNet projections all read a layer as K channels on an h×w grid. Layers lay that out in
three ways:

- **NCHW**: convolutional networks (torchvision, timm ResNet/ConvNeXt): used as is;
- **NHWC**: the stages of a Swin transformer (torchvision's ``features``, timm's ``layers``,
  both ``output_fmt`` NHWC): channels last, permuted;
- **tokens** N×T×K: vision transformers. The first ``prefix_tokens`` tokens (class,
  distillation, register tokens) are not on the grid and are dropped; the other h·w patch
  tokens, in row-major order, are reshaped to h×w.

pytorch-grad-cam leaves this to the user, who writes a ``reshape_transform`` per
architecture (``tensor[:, 1:, :].reshape(n, 14, 14, k)`` moved to NCHW); here it is read from
the model where the model says it — timm's and the embedded ViT's ``num_prefix_tokens`` and
``patch_embed.grid_size``, torchvision ViT's ``class_token``, ``image_size`` and
``patch_size`` — and inferred otherwise (a square grid: ``prefix = T − isqrt(T)²``).

A 4-D output is NCHW unless only its dimensions 1 and 2 form a square grid (inputs are square,
as every ``LoadedModel``'s is); when all three trailing sizes are equal, convolution,
normalisation and pooling modules are NCHW, and other modules are NHWC only in a model that
declares channels-last stages (timm's ``output_fmt``, torchvision's Swin).

Every mapping is a pure rearrangement (a view): the gradient with respect to the feature map
is the same mapping of the gradient with respect to the layer's output, and ``from_map``
inverts it (the prefix tokens taken from a given output), for methods that write a feature
map back into the network (Ablation-CAM).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ParameterError

NCHW, NHWC, TOKENS = "nchw", "nhwc", "tokens"

_CHANNELS_FIRST_MODULES = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d,
                           nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_CHANNELS_LAST_MODELS = {"SwinTransformer"}  # torchvision's; it declares no output format


@dataclass(frozen=True)
class Layout:
    """Where the channels and the grid are in one layer's output.

    ``kind`` is ``NCHW``, ``NHWC`` or ``TOKENS``; ``grid`` is (h, w); ``prefix_tokens`` the
    tokens before the patch tokens (``TOKENS`` only).
    """
    kind: str
    grid: tuple[int, int]
    prefix_tokens: int = 0

    def to_map(self, output: torch.Tensor) -> torch.Tensor:
        """The layer's output (any leading dimensions, then its own layout) as …×K×h×w, a view."""
        if self.kind == NCHW:
            return output
        if self.kind == NHWC:
            return output.movedim(-1, -3)
        patches = output[..., self.prefix_tokens:, :]
        return patches.unflatten(-2, self.grid).movedim(-1, -3)

    def from_map(self, feature_map: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """…×K×h×w back to the layer's layout; token layouts take their prefix tokens from
        ``output`` (the layer's own output, broadcast over ``feature_map``'s leading dimensions)."""
        if self.kind == NCHW:
            return feature_map
        if self.kind == NHWC:
            return feature_map.movedim(-3, -1)
        patches = feature_map.movedim(-3, -1).flatten(-3, -2)
        prefix = output[..., :self.prefix_tokens, :].to(patches.dtype)
        return torch.cat([prefix.expand(*patches.shape[:-2], *prefix.shape[-2:]), patches], dim=-2)

    def __str__(self) -> str:
        h, w = self.grid
        if self.kind == TOKENS:
            return f"tokens: {self.prefix_tokens} prefix + {h}×{w} grid"
        return f"{self.kind.upper()} {h}×{w}"


def declared_tokens(module_root: nn.Module) -> tuple[int, tuple[int, int]] | None:
    """(prefix tokens, patch grid h×w) as the model declares them, or None when it declares none:
    timm's (and the embedded ViT's) ``num_prefix_tokens`` and ``patch_embed.grid_size``,
    torchvision ViT's class token and ``image_size // patch_size``."""
    grid = getattr(getattr(module_root, "patch_embed", None), "grid_size", None)
    if hasattr(module_root, "num_prefix_tokens") and grid is not None:
        return int(module_root.num_prefix_tokens), (int(grid[0]), int(grid[1]))
    if all(hasattr(module_root, fact) for fact in ("class_token", "image_size", "patch_size")):
        side = int(module_root.image_size) // int(module_root.patch_size)
        return 1, (side, side)
    return None


def token_grid(module_root: nn.Module, tokens: int) -> tuple[int, tuple[int, int]]:
    """(prefix tokens, grid h×w) of a sequence of ``tokens`` tokens: the model's declaration when
    it accounts for exactly that many, else a square grid after ``tokens − isqrt(tokens)²`` prefix tokens."""
    declared = declared_tokens(module_root)
    if declared is not None and declared[0] + declared[1][0] * declared[1][1] == tokens:
        return declared
    side = math.isqrt(tokens)
    return tokens - side * side, (side, side)


def _channels_last_declared(module_root: nn.Module) -> bool:
    return getattr(module_root, "output_fmt", None) == "NHWC" or type(module_root).__name__ in _CHANNELS_LAST_MODELS


def layer_layout(module_root: nn.Module, layer: nn.Module, output: torch.Tensor, name: str) -> Layout:
    """The layout of ``output``, the output of ``layer`` (named ``name``) in ``module_root``;
    ``ParameterError`` when it is neither a feature map nor a token sequence."""
    if output.dim() == 4:
        _, d1, d2, d3 = output.shape
        square_first, square_last = d2 == d3, d1 == d2
        if square_first and square_last:
            channels_last = not isinstance(layer, _CHANNELS_FIRST_MODULES) and _channels_last_declared(module_root)
        else:
            channels_last = square_last
        return Layout(NHWC, (d1, d2)) if channels_last else Layout(NCHW, (d2, d3))
    if output.dim() == 3 and output.shape[1] >= 1:
        prefix, grid = token_grid(module_root, output.shape[1])
        return Layout(TOKENS, grid, prefix)
    raise ParameterError(f"Layer '{name}' outputs shape {tuple(output.shape)}, not a feature map or a "
                         "sequence of tokens; choose a convolutional layer or a transformer block.")
