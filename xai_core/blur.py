"""The one Gaussian blur: blurred fills and baselines (RISE, occlusion, IG) and inversion's regulariser.

The kernel is torchvision's ``gaussian_blur`` (sampled at integer offsets −r…r, normalised to sum 1,
the 2-D kernel the outer product of the 1-D one, reflect padding), written here with torch alone:
importing torchvision costs seconds (its ops import ``torch._dynamo``), which ``import xai_core``
should not pay for a blur.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _kernel1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    half = (size - 1) * 0.5
    pdf = torch.exp(-0.5 * (torch.linspace(-half, half, steps=size, dtype=dtype, device=device) / sigma).pow(2))
    return pdf / pdf.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of N×C×H×W (kernel ±3σ, at most the image size, reflect padding)."""
    radius = max(1, math.ceil(3 * sigma))
    size = min(2 * radius + 1, (min(x.shape[-2:]) - 1) // 2 * 2 + 1)  # reflect padding needs size ≤ side
    dtype = x.dtype if x.is_floating_point() else torch.float32
    line = _kernel1d(size, sigma, dtype, x.device)
    kernel = torch.mm(line[:, None], line[None, :]).expand(x.shape[-3], 1, size, size)
    padded = F.pad(x.to(dtype), [size // 2] * 4, mode="reflect")
    return F.conv2d(padded, kernel, groups=x.shape[-3]).to(x.dtype)
