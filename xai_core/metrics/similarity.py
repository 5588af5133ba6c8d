"""Similarity of two batches of maps, per pair, as the sanity checks compare them (torch, batched).

- ``spearman``: Spearman's rank correlation, the Pearson correlation of the ranks, ties given
  their average rank (``scipy.stats.spearmanr``, which Quantus's ``correlation_spearman`` calls).
- ``ssim``: the structural similarity of Wang et al. (IEEE TIP 2004) with scikit-image's defaults,
  which Quantus's ``ssim`` calls: a uniform 7×7 window, K1 = 0.01, K2 = 0.03, sample covariances
  (× 49/48), the dynamic range L = max − min over both maps, averaged over the windows that fit
  inside the image (skimage crops 3 px from each border; so do we, by filtering without padding).

Both are NaN where undefined (a constant map has no ranks to correlate; two constant equal maps
have no range). Computed in float64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_WINDOW = 7
_K1, _K2 = 0.01, 0.03


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """B×N → B×N float64 ranks 1..N along each row, ties given the mean of the ranks they span."""
    b, n = values.shape
    ordered, order = values.sort(dim=1, stable=True)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = starts.cumsum(dim=1) - 1 + torch.arange(b, device=values.device).view(-1, 1) * n  # unique per row
    positions = torch.arange(n, device=values.device, dtype=torch.float64).expand(b, n).reshape(-1)
    flat_group = group.reshape(-1)
    first = torch.full((b * n,), float(n), dtype=torch.float64, device=values.device)
    last = torch.zeros(b * n, dtype=torch.float64, device=values.device)
    first.scatter_reduce_(0, flat_group, positions, reduce="amin")
    last.scatter_reduce_(0, flat_group, positions, reduce="amax")
    sorted_ranks = ((first[flat_group] + last[flat_group]) / 2 + 1).view(b, n)
    return torch.empty_like(sorted_ranks).scatter_(1, order, sorted_ranks)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """B×N, B×N → B: Pearson correlation per row (NaN where a row is constant)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.square().sum(dim=1) * b.square().sum(dim=1)).sqrt()


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """B×H×W, B×H×W → B float64: Spearman rank correlation of each pair of maps."""
    flat_a, flat_b = a.flatten(1).to(torch.float64), b.flatten(1).to(torch.float64)
    return pearson(average_ranks(flat_a), average_ranks(flat_b))


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """B×H×W, B×H×W → B float64: mean structural similarity of each pair (H, W ≥ 7)."""
    x, y = a.to(torch.float64).unsqueeze(1), b.to(torch.float64).unsqueeze(1)
    low = torch.minimum(x.amin(dim=(1, 2, 3)), y.amin(dim=(1, 2, 3)))
    data_range = (torch.maximum(x.amax(dim=(1, 2, 3)), y.amax(dim=(1, 2, 3))) - low).view(-1, 1, 1)
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    # the five window means in one pass: E[x], E[y], E[x²], E[y²], E[xy] over every 7×7 window inside the image
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = F.avg_pool2d(torch.cat([x, y, x * x, y * y, x * y], dim=1),
                                                            SSIM_WINDOW, stride=1).unbind(dim=1)
    n = SSIM_WINDOW * SSIM_WINDOW
    covariance_norm = n / (n - 1)
    var_x = covariance_norm * (mean_xx - mean_x * mean_x)
    var_y = covariance_norm * (mean_yy - mean_y * mean_y)
    cov_xy = covariance_norm * (mean_xy - mean_x * mean_y)
    numerator = (2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
    denominator = (mean_x * mean_x + mean_y * mean_y + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean(dim=(1, 2))


SIMILARITIES = {"spearman": spearman, "ssim": ssim}
