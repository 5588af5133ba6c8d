"""SmoothGrad (Smilkov et al. 2017), SmoothGrad² and VarGrad (Adebayo et al. 2018).

``samples`` noisy copies x + ε, ε ~ N(0, σ²) with σ = ``noise`` · (max(x) − min(x)), go
through the model in engine batches; one forward pass per batch serves every target. The
noise is drawn once, up front, from a generator seeded with ``seed``: results do not depend
on the batch size the engine picks (nor on an out-of-memory retry), and they equal Captum's
``NoiseTunnel(Saliency(abs=False))`` draws for ``torch.manual_seed(seed)`` on the CPU.

Per sample i the gradient gᵢ (C×H×W) and its saliency map sᵢ = maxᶜ|gᵢ| are computed. The
map follows the lab handout ("average the saliency maps of the noisy copies"):

- ``mean``:    map = mean sᵢ,              attribution = mean gᵢ          (Captum "smoothgrad")
- ``squared``: map = mean sᵢ²,             attribution = mean gᵢ²         (Captum "smoothgrad_sq")
- ``vargrad``: map = variance of sᵢ,       attribution = variance of gᵢ   (Captum "vargrad")

Captum reduces its base attribution per sample; with ``Saliency(abs=False)`` its results are
our attributions exactly.
"""
from __future__ import annotations

import torch

from .base import Method, MethodOutput, Param

VARIANTS = ("mean", "squared", "vargrad")


def noise_draws(x: torch.Tensor, samples: int, noise: float, seed: int) -> torch.Tensor:
    """samples×C×H×W Gaussian noise with σ = noise · (max(x) − min(x)), on x's device."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    sigma = noise * (x.max() - x.min())
    return torch.randn((samples, *x.shape), generator=generator, device=x.device) * sigma


def _smoothgrad(model, x, targets, *, engine, progress=None, samples, noise, variant, seed):
    eps = noise_draws(x, samples, noise, seed)
    target_index = torch.as_tensor(targets, device=x.device)
    channels = x.shape[0]

    def batch(start: int, stop: int) -> torch.Tensor:
        """Per target, summed over the batch: [g, g², s, s²] stacked along channels."""
        with torch.enable_grad():
            xs = (x.unsqueeze(0) + eps[start:stop]).requires_grad_(True)
            picked = model.module(xs).float()[:, target_index]            # B×T
            grads = torch.stack([torch.autograd.grad(picked[:, i].sum(), xs, retain_graph=i < len(targets) - 1)[0]
                                 for i in range(len(targets))]).float()  # T×B×C×H×W
        sal = grads.abs().amax(dim=2, keepdim=True)                      # T×B×1×H×W
        return torch.cat([grads, grads * grads, sal, sal * sal], dim=2).sum(dim=1)

    totals = engine.map_sum(batch, samples, key=f"smoothgrad:{model.name}:{tuple(x.shape)}",
                            progress=progress, message="SmoothGrad: noisy copies") / samples
    g_mean, g_sq = totals[:, :channels], totals[:, channels:2 * channels]
    s_mean, s_sq = totals[:, 2 * channels], totals[:, 2 * channels + 1]
    if variant == "mean":
        return MethodOutput(maps=s_mean, attributions=g_mean)
    if variant == "squared":
        return MethodOutput(maps=s_sq, attributions=g_sq)
    return MethodOutput(maps=(s_sq - s_mean ** 2).clamp(min=0), attributions=(g_sq - g_mean ** 2).clamp(min=0))


SMOOTHGRAD = Method(
    "smoothgrad", "SmoothGrad", "gradient", _smoothgrad,
    params={
        "samples": Param(int, 25, 1, 1000, help="number of noisy copies"),
        "noise": Param(float, 0.15, 0.0, 1.0, help="noise σ as a fraction of the input's max − min range"),
        "variant": Param(str, "mean", choices=VARIANTS,
                         help="mean (SmoothGrad), squared (SmoothGrad²) or vargrad (variance)"),
        "seed": Param(int, 0, 0, 2**31 - 1, help="seed of the noise draws"),
    },
    description="Saliency averaged over noisy copies of the input (Smilkov et al. 2017).")
