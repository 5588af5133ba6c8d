"""SmoothGrad (Smilkov et al. 2017), SmoothGrad² and VarGrad (Adebayo et al. 2018), as a noise
tunnel over any gradient method (Captum's ``NoiseTunnel``).

``samples`` noisy copies x + ε, ε ~ N(0, σ²) with σ = ``noise`` · (max(x) − min(x)), go through
the ``base`` method's batched attribution in engine batches (one forward pass per batch serves
every target; for a batch of images, every image × copy is one item). The noise is drawn once, up front, from a generator seeded with ``seed``:
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

Convergence (``tolerance`` τ > 0; 0 runs exactly ``samples``): the copies run in rounds ending at
10, 20, 40, … capped at ``samples`` (the maximum), and an image stops once the Pearson correlation
of its variant map with the previous round's is ≥ 1 − τ for every target in two rounds in a
row — the rule and its
rationale are RISE's (``convergence.run_until_converged``). The noise for ``samples`` copies is drawn up
front and a round uses the next draws, so a stopped map is the average over the first copies.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from .base import Method, MethodOutput, Param
from .convergence import TOLERANCE, doubling_rounds, run_until_converged

VARIANTS = ("mean", "squared", "vargrad")
DEFAULT_BASE = "saliency"
FIRST_ROUND = 10
"""Noisy copies in the first convergence round; each later round doubles the count."""


def unit_noise(x: torch.Tensor, samples: int, seed: int) -> torch.Tensor:
    """samples×C×H×W standard Gaussian draws for images shaped like ``x``, on its device."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    return torch.randn((samples, *x.shape[-3:]), generator=generator, device=x.device)


def _tunnel(bases: Mapping[str, Method]):
    def noise_tunnel_batch(model, xs, targets, *, engine, progress=None, samples, noise, variant, seed, base,
                           base_params: dict[str, Any], tolerance=0.0):
        """Every image × noisy copy is one engine item (image-major); the same draws, scaled by each
        image's own range, serve every image, so each image gets exactly its single-image result."""
        spec = bases[base]
        eps = unit_noise(xs, samples, seed)
        sigma = noise * (xs.flatten(1).amax(1) - xs.flatten(1).amin(1))          # B
        n_images, channels = len(xs), xs.shape[1]
        key = f"smoothgrad:{base}:{model.name}:{tuple(xs.shape[1:])}"

        # Per image and target, summed over its copies: [g, g², s, s²] stacked along channels; in
        # place, since a fresh B-image tensor per batch would cost more than the batch for large B.
        totals = torch.zeros(n_images, targets.shape[1], 2 * channels + 2, *xs.shape[2:], device=xs.device)

        def batch(start: int, stop: int, images: torch.Tensor, first_draw: int, draws: int) -> None:
            """Items ``[start, stop)`` of ``images`` × draws ``[first_draw, first_draw + draws)``."""
            item = torch.arange(start, stop, device=xs.device)
            image, draw = images[item // draws], first_draw + item % draws
            noisy = xs[image] + eps[draw] * sigma[image].view(-1, 1, 1, 1)
            grads = spec.attribute(model, noisy, targets[image], engine=engine, **base_params).float()  # T×k×C×H×W
            maps = spec.to_map(grads).unsqueeze(2)                               # T×k×1×H×W
            stacked = torch.cat([grads, grads * grads, maps, maps * maps], dim=2)
            totals.index_add_(0, image, stacked.transpose(0, 1))

        def averaged(means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(maps, attributions) of the variant from the per-copy means of [g, g², s, s²]."""
            g_mean, g_sq = means[:, :, :channels], means[:, :, channels:2 * channels]
            s_mean, s_sq = means[:, :, 2 * channels], means[:, :, 2 * channels + 1]
            if variant == "mean":
                return s_mean, g_mean
            if variant == "squared":
                return s_sq, g_sq
            return (s_sq - s_mean ** 2).clamp(min=0), (g_sq - g_mean ** 2).clamp(min=0)

        extras = {"base": base}
        all_images = torch.arange(n_images, device=xs.device)
        if tolerance <= 0:
            engine.map(lambda a, b: batch(a, b, all_images, 0, samples), n_images * samples, section="gradients",
                       key=key, progress=progress, message=f"SmoothGrad over {spec.label}: noisy copies")
            totals /= samples
            maps, attributions = averaged(totals)
            return MethodOutput(maps=maps, attributions=attributions, extras=extras)

        def run_round(active, lo, hi):
            images = active.to(xs.device)
            engine.map(lambda a, b: batch(a, b, images, lo, hi - lo), len(images) * (hi - lo), section="gradients",
                       key=key)
            if progress is not None:
                progress(hi / samples, f"SmoothGrad over {spec.label}: {hi} / {samples} noisy copies at most")

        def current(used):
            return averaged(totals / used.to(xs.device).view(-1, 1, 1, 1, 1))

        rounds = doubling_rounds(FIRST_ROUND, samples)
        used, correlations = run_until_converged(n_images, rounds, tolerance, run_round,
                                                 lambda used: current(used)[0])
        maps, attributions = current(used)
        return MethodOutput(maps=maps, attributions=attributions, extras=extras | {
            "per_target_samples_used": used.view(-1, 1).expand(targets.shape).numpy().copy(),
            "round_samples": rounds,
            "per_target_round_correlations": correlations.unsqueeze(1).expand(-1, targets.shape[1], -1).numpy()})

    def noise_tunnel(model, x, targets, *, engine, progress=None, **params):
        out = noise_tunnel_batch(model, x.unsqueeze(0), torch.as_tensor([list(targets)], device=x.device),
                                 engine=engine, progress=progress, **params)
        return MethodOutput(maps=out.maps[0], attributions=out.attributions[0],
                            extras={k: v[0] if k.startswith("per_target_") else v for k, v in out.extras.items()})

    return noise_tunnel, noise_tunnel_batch


def noise_tunnel_method(bases: Mapping[str, Method]) -> Method:
    """The ``smoothgrad`` method over the composable ``bases`` (every method with a batched attribution)."""
    single, batched = _tunnel(bases)
    return Method(
        "smoothgrad", "SmoothGrad", "gradient", single, batch_fn=batched,
        params={
            "base": Param(str, DEFAULT_BASE, choices=tuple(bases), label="over",
                          help="the gradient method averaged over noisy copies (its parameters: base.NAME)"),
            "samples": Param(int, 25, 1, 1000, widget="log_slider", help="number of noisy copies"),
            "noise": Param(float, 0.15, 0.0, 1.0, step=0.01,
                           help="noise σ as a fraction of the input's max − min range"),
            "variant": Param(str, "mean", choices=VARIANTS, widget="radio",
                             help="mean (SmoothGrad), squared (SmoothGrad²) or vargrad (variance)"),
            "seed": Param(int, 0, 0, 2**31 - 1, widget="number", help="seed of the noise draws"),
            "tolerance": TOLERANCE,
        },
        bases=dict(bases),
        reference="Captum NoiseTunnel (smoothgrad, smoothgrad_sq, vargrad)",
        description="Any gradient method averaged over noisy copies of the input (Smilkov et al. 2017); "
                    "SmoothGrad² and VarGrad (Adebayo et al. 2018) as variants.")
