"""RIG step 3: IG (black baseline) on every network, the region important in all of them, and the
occlusion that tests it (§5.2).

The paper does not say how a feature counts as "present" in a map. Our reading: a pixel is
important in a map when its (channel-summed) attribution is ≥ τ × that map's maximum,
negatives dropped, and the RIG region is the intersection over all networks. The occlusion
blacks the region out (black = the IG baseline) and compares with an equally large region of
the classifier's strongest plain-IG pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..engine import Engine, Progress
from ..errors import ParameterError
from ..methods.integrated_gradients import integrated_gradients, reduce_channels
from ..model_handle import LoadedModel
from ..replacements import replace, replacement_image
from .defaults import DEFAULT_RULE, DEFAULT_STEPS, DEFAULT_TAU
from .targets import batched_logits
from .training import SupportNetworks

BASELINE = "black"
"""The replacement (``xai_core.replacements``) that is both the IG baseline and the occluder."""


def important_regions(maps: torch.Tensor, tau: float) -> torch.Tensor:
    """…×H×W maps → where the attribution is ≥ τ × the map's maximum (negatives dropped)."""
    positive = maps.clamp(min=0)
    peak = positive.amax(dim=(-2, -1), keepdim=True)
    return (positive >= tau * peak) & (peak > 0)


@dataclass
class RigExplanation:
    """IG of both classes on every network, what each finds important, and the RIG region."""
    classes: tuple[int, int]
    network_names: list[str]          # "classifier", "α=2", ...
    network_maps: np.ndarray          # K+1 × 2 × H×W channel-summed IG (signed)
    important: np.ndarray             # K+1 × 2 × H×W bool
    region: np.ndarray                # 2×H×W bool: important in every network's map
    completeness_gap: np.ndarray      # K+1 × 2
    tau: float

    @property
    def ig(self) -> np.ndarray:
        """The classifier's IG maps, 2×H×W."""
        return self.network_maps[0]

    @property
    def rig(self) -> np.ndarray:
        """The classifier's positive IG inside the RIG region, 2×H×W."""
        return np.clip(self.ig, 0, None) * self.region

    @property
    def area(self) -> dict[str, np.ndarray]:
        """Share of the image each selection keeps, per class."""
        return {"ig_important": self.important[0].mean(axis=(-2, -1)), "rig": self.region.mean(axis=(-2, -1))}

    @property
    def occlusion_region(self) -> np.ndarray:
        """H×W: the RIG regions of both classes together (what separates the pair)."""
        return self.region.any(0)

    @property
    def ig_scores(self) -> np.ndarray:
        """H×W ranking for the equally large plain-IG region: each class's positive IG over its max,
        then the larger of the two classes."""
        positive = np.clip(self.ig, 0, None)
        peak = positive.max(axis=(-2, -1), keepdims=True)
        return (positive / np.where(peak > 0, peak, 1)).max(0)


def check_tau(tau: float) -> None:
    """``ParameterError`` unless ``0 < τ ≤ 1`` (NaN fails too): before any training is spent on it."""
    if not 0 < tau <= 1:
        raise ParameterError(f"τ must be in (0, 1]; got {tau}.")


def rig_explain(model: LoadedModel, x: torch.Tensor, supports: SupportNetworks, *, tau: float = DEFAULT_TAU,
                steps: int = DEFAULT_STEPS, rule: str = DEFAULT_RULE, engine: Engine | None = None,
                progress: Progress | None = None) -> RigExplanation:
    """IG (black baseline) of both classes on every network, and the region important in all of them."""
    check_tau(tau)
    engine = engine or Engine(model.device)
    x = x.to(model.device, torch.float32)
    baselines = replacement_image(model, x, BASELINE).unsqueeze(0)
    named = supports.modules(model)
    maps, gaps = [], []
    for k, (name, module) in enumerate(named):
        def step_progress(fraction: float, message: str, k=k) -> None:
            if progress is not None:
                progress((k + fraction) / len(named), message)

        result = integrated_gradients(module, x, baselines, list(supports.classes), steps=steps, rule=rule,
                                      engine=engine, progress=step_progress, message=f"IG on {name}")
        maps.append(reduce_channels(result.attributions, "sum"))
        gaps.append(result.completeness_gap)
    stacked = torch.stack(maps)
    important = important_regions(stacked, tau)
    return RigExplanation(supports.classes, [n for n, _ in named], stacked.cpu().numpy(),
                          important.cpu().numpy(), important.all(0).cpu().numpy(),
                          torch.stack(gaps).cpu().numpy(), tau)


def top_region(scores: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` highest-scoring pixels of an H×W map, as a mask."""
    mask = np.zeros(scores.size, dtype=bool)
    if size > 0:
        mask[np.argsort(scores, axis=None, kind="stable")[::-1][:size]] = True
    return mask.reshape(scores.shape)


def occlusion_logits(model: LoadedModel, x: torch.Tensor, classes: Sequence[int], region: np.ndarray,
                     ig_scores: np.ndarray) -> np.ndarray:
    """3×2 pre-softmax logits of ``classes``: original, ``region`` blacked out, and the equally
    large top region of ``ig_scores`` blacked out (black = the IG baseline)."""
    x = x.to(model.device, torch.float32)
    occluded = [np.zeros_like(region, dtype=bool), region.astype(bool), top_region(ig_scores, int(region.sum()))]
    keep = ~torch.as_tensor(np.stack(occluded), device=x.device).unsqueeze(1)   # 3×1×H×W
    images = replace(x, keep.float(), replacement_image(model, x, BASELINE))
    logits = batched_logits(model.module, images, Engine(model.device))
    return logits[:, list(classes)].numpy()
