"""The one vocabulary for "what replaces a pixel": RISE fills, occlusion fills, IG baselines
and RIG's occlusion all draw from these names, and a name means the same image everywhere.

Each replacement is an image in the model's normalised space, the same shape as the input:

- ``black``: intensity 0 in every channel (``model.normalized_constant(0)``).
- ``white``: intensity 1 in every channel.
- ``grey``: the dataset mean, i.e. the normalised value 0 (what a model sees as "nothing";
  the RISE authors' code fills with it by multiplying the normalised tensor).
- ``image_mean``: the image's own mean colour, per channel.
- ``blur``: the image blurred by a Gaussian of σ = max(1, min(H, W) / 16) pixels (14 px at
  224 px, 4 px at 64 px): fine detail gone, layout kept. The one σ rule for every method.
- ``noise``: uniform noise in [0, 1] pixel space, seeded (``seed``); ``draws`` images for
  IG's averaged noise baselines.
- ``constant``: a user grey level ``value`` in [0, 1] pixel space (0 = black, 1 = white).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .blur import gaussian_blur
from .errors import ParameterError

if TYPE_CHECKING:
    from .model_handle import LoadedModel

REPLACEMENTS = ("black", "grey", "image_mean", "blur", "noise", "white", "constant")
DEFAULT_CONSTANT = 0.5
"""Grey level of ``constant`` when none is given (mid-grey in pixel space)."""
HELP = ("black, white, grey (dataset mean), image_mean (the image's mean colour), blur (σ = side/16), "
        "uniform noise, or constant (the grey level given by 'constant')")


def blur_sigma(height: int, width: int) -> float:
    """The one blur σ rule, in pixels: max(1, min(H, W) / 16)."""
    return max(1.0, min(height, width) / 16)


def replacement_image(model: LoadedModel, x: torch.Tensor, name: str, *, value: float = DEFAULT_CONSTANT, seed: int = 0,
                      draws: int = 1) -> torch.Tensor:
    """The replacement ``name`` for the normalised image ``x`` (C×H×W): C×H×W on x's device,
    or draws×C×H×W for ``noise`` with ``draws`` > 1."""
    if name not in REPLACEMENTS:
        raise ParameterError(f"Unknown replacement '{name}'; choose one of {', '.join(REPLACEMENTS)}.")
    if name == "constant" and not (math.isfinite(value) and 0 <= value <= 1):
        raise ParameterError(f"The constant grey level must be in [0, 1]; got {value}.")
    if name == "noise":
        if draws < 1:
            raise ParameterError(f"Noise replacements need at least one draw; got {draws}.")
        generator = torch.Generator().manual_seed(seed)
        pixels = torch.rand((draws, *x.shape), generator=generator)
        mean = torch.tensor(model.mean).view(3, 1, 1)
        std = torch.tensor(model.std).view(3, 1, 1)
        images = ((pixels - mean) / std).to(x.device, x.dtype)
        return images if draws > 1 else images[0]
    if name == "grey":
        return torch.zeros_like(x)
    if name == "image_mean":
        return x.mean(dim=(-2, -1), keepdim=True).expand_as(x).clone()
    if name == "blur":
        return gaussian_blur(x.unsqueeze(0), blur_sigma(*x.shape[-2:]))[0]
    level = {"black": 0.0, "white": 1.0, "constant": value}[name]
    return model.normalized_constant(level).to(x.device, x.dtype).expand_as(x).clone()


def replace(x: torch.Tensor, keep: torch.Tensor, replacement: torch.Tensor) -> torch.Tensor:
    """x where ``keep`` is 1, ``replacement`` where it is 0, blended in between.

    ``keep`` broadcasts against ``x`` (e.g. N×1×H×W masks against a C×H×W image).
    """
    return x * keep + replacement * (1 - keep)
