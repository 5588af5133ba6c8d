"""The one Gaussian blur: blurred fills and baselines (RISE, occlusion, IG) and inversion's regulariser."""
from __future__ import annotations

import math

import torch
from torchvision.transforms import functional as TF


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of N×C×H×W (kernel ±3σ, at most the image size, reflect padding)."""
    radius = max(1, math.ceil(3 * sigma))
    size = min(2 * radius + 1, (min(x.shape[-2:]) - 1) // 2 * 2 + 1)  # reflect padding needs size ≤ side
    return TF.gaussian_blur(x, [size, size], [sigma, sigma])
