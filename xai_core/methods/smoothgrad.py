"""SmoothGrad (Smilkov et al. 2017), SmoothGrad² and VarGrad (Adebayo et al. 2018), as a noise
tunnel over any gradient method (Captum's ``NoiseTunnel``).

``samples`` noisy copies x + ε, ε ~ N(0, σ²) with σ = ``noise`` · (max(x) − min(x)), go through
the ``base`` method's batched attribution in engine batches (one forward pass per batch serves
every target). The noise is drawn once, up front, from a generator seeded with ``seed``:
results do not depend on the batch size the engine picks (nor on an out-of-memory retry), and
they equal Captum's ``NoiseTunnel(base)`` draws for ``torch.manual_seed(seed)`` on the CPU.

Per sample i the base attribution gᵢ (C×H×W) and its map sᵢ = to_map(gᵢ) are computed (for
``base = saliency``, sᵢ = maxᶜ|gᵢ|: the lab handout's "average the saliency maps of the noisy
copies"):

- ``mean``:    map = mean sᵢ,              attribution = mean gᵢ          (Captum "smoothgrad")
- ``squared``: map = mean sᵢ²,             attribution = mean gᵢ²         (Captum "smoothgrad_sq")
- ``vargrad``: map = variance of sᵢ,       attribution = variance of gᵢ   (Captum "vargrad")

Captum reduces the base attribution per sample, so our attributions are its results exactly.
The base's own parameters are given as ``base.NAME`` (e.g. ``base.steps`` for IG); a base whose
attribution is itself batched over items (IG's path points) runs them through the same engine.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from .base import Method, MethodOutput, Param

VARIANTS = ("mean", "squared", "vargrad")
DEFAULT_BASE = "saliency"


def noise_draws(x: torch.Tensor, samples: int, noise: float, seed: int) -> torch.Tensor:
    """samples×C×H×W Gaussian noise with σ = noise · (max(x) − min(x)), on x's device."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    sigma = noise * (x.max() - x.min())
    return torch.randn((samples, *x.shape), generator=generator, device=x.device) * sigma


def _tunnel(bases: Mapping[str, Method]):
    def noise_tunnel(model, x, targets, *, engine, progress=None, samples, noise, variant, seed, base,
                     base_params: dict[str, Any]):
        spec = bases[base]
        eps = noise_draws(x, samples, noise, seed)
        channels = x.shape[0]

        def batch(start: int, stop: int) -> torch.Tensor:
            """Per target, summed over the batch: [g, g², s, s²] stacked along channels."""
            grads = spec.attribute(model, x.unsqueeze(0) + eps[start:stop], targets, engine=engine,
                                   **base_params).float()                  # T×B×C×H×W
            maps = spec.to_map(grads).unsqueeze(2)                          # T×B×1×H×W
            return torch.cat([grads, grads * grads, maps, maps * maps], dim=2).sum(dim=1)

        totals = engine.map_sum(batch, samples, section="gradients",
                                key=f"smoothgrad:{base}:{model.name}:{tuple(x.shape)}",
                                progress=progress, message=f"SmoothGrad over {spec.label}: noisy copies") / samples
        g_mean, g_sq = totals[:, :channels], totals[:, channels:2 * channels]
        s_mean, s_sq = totals[:, 2 * channels], totals[:, 2 * channels + 1]
        if variant == "mean":
            return MethodOutput(maps=s_mean, attributions=g_mean, extras={"base": base})
        if variant == "squared":
            return MethodOutput(maps=s_sq, attributions=g_sq, extras={"base": base})
        return MethodOutput(maps=(s_sq - s_mean ** 2).clamp(min=0), attributions=(g_sq - g_mean ** 2).clamp(min=0),
                            extras={"base": base})
    return noise_tunnel


def noise_tunnel_method(bases: Mapping[str, Method]) -> Method:
    """The ``smoothgrad`` method over the composable ``bases`` (every method with a batched attribution)."""
    return Method(
        "smoothgrad", "SmoothGrad", "gradient", _tunnel(bases),
        params={
            "base": Param(str, DEFAULT_BASE, choices=tuple(bases), label="over",
                          help="the gradient method averaged over noisy copies (its parameters: base.NAME)"),
            "samples": Param(int, 25, 1, 1000, widget="log_slider", help="number of noisy copies"),
            "noise": Param(float, 0.15, 0.0, 1.0, step=0.01,
                           help="noise σ as a fraction of the input's max − min range"),
            "variant": Param(str, "mean", choices=VARIANTS, widget="radio",
                             help="mean (SmoothGrad), squared (SmoothGrad²) or vargrad (variance)"),
            "seed": Param(int, 0, 0, 2**31 - 1, widget="number", help="seed of the noise draws"),
        },
        bases=dict(bases),
        reference="Captum NoiseTunnel (smoothgrad, smoothgrad_sq, vargrad)",
        description="Any gradient method averaged over noisy copies of the input (Smilkov et al. 2017); "
                    "SmoothGrad² and VarGrad (Adebayo et al. 2018) as variants.")
