"""Score-CAM (Wang et al. 2020) and Faster Score-CAM.

Score-CAM, following the paper: the activation A (K×h×w) of ``layer`` is read in one forward
pass; each channel A_k is upsampled to the input size (bilinear, ``align_corners=False`` as in
the authors' code), min-max normalised to H_k ∈ [0, 1] and used as a mask on the (normalised)
input, X ∘ H_k. The masked inputs go through the model in engine batches, one forward pass
serving every target, in fp32 (channel scores differ by little: precision section ``score_difference``). The
channel score is the increase in confidence CIC_k = s_t(X ∘ H_k) − s_t(X_b), with s_t the
softmax probability of target t and the baseline X_b the all-zero normalised input (the
dataset-mean image, i.e. a mask H = 0). Weights, per ``weighting``:

- ``softmax`` (default, paper Eq. 6 / authors' code): w = softmax over channels of CIC.
  Softmax is shift-invariant, so the baseline cancels: this equals pytorch-grad-cam's
  ``ScoreCAM`` with ``ClassifierOutputSoftmaxTarget``, which scores without a baseline.
  (pytorch-grad-cam's default ``ClassifierOutputTarget`` scores the raw logit instead, and its
  masks are upsampled with ``align_corners=True``; both are deliberate differences.)
- ``cic``: w = CIC itself, where the baseline matters (negative weights allowed).

Map = ReLU(Σ_k w_k A_k), bilinearly upsampled like the other CAMs.

Faster Score-CAM (as used in the internship report, with its ``max_N``): only the ``max_n``
channels with the largest spatial variance of A_k are scored and combined (flat channels
make near-uniform masks that carry little information); the softmax runs over those
channels. With ``max_n`` ≥ K it is Score-CAM exactly (same channels, same order).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import ParameterError
from .base import MethodOutput, Param
from .cam_pipeline import cam_method, read_layer, to_input_size, upsample, weighted_sum

if TYPE_CHECKING:
    from ..engine import Engine, Progress
    from ..model_handle import LoadedModel

WEIGHTINGS = ("softmax", "cic")


def score_cam(model: LoadedModel, x: torch.Tensor, targets: list[int], layer: str, *, engine: Engine,
              progress: Progress | None = None, weighting: str = "softmax", max_n: int | None = None) -> MethodOutput:
    """Score-CAM over all channels (``max_n=None``) or the ``max_n`` of largest variance."""
    size = x.shape[-2:]
    target_index = torch.as_tensor(targets, device=x.device)
    activation = read_layer(model, x, targets, layer, engine=engine, gradients=False).activation
    if activation.shape[-2:].numel() == 1:  # a 1×1 map upsamples to a flat mask: nothing to score
        raise ParameterError(f"Layer '{layer}' has 1×1 feature maps; Score-CAM needs spatial maps.")
    with torch.no_grad():
        channels = torch.arange(activation.shape[0], device=x.device)
        if max_n is not None and max_n < activation.shape[0]:
            channels = activation.flatten(1).var(dim=1).topk(max_n).indices.sort().values
        chosen = activation[channels]

        def score_batch(start: int, stop: int) -> torch.Tensor:
            masks = upsample(chosen[start:stop], size)                    # b×H×W
            low = masks.flatten(1).min(dim=1).values.view(-1, 1, 1)
            high = masks.flatten(1).max(dim=1).values.view(-1, 1, 1)
            masks = (masks - low) / (high - low + 1e-8)
            logits = model.module(x.unsqueeze(0) * masks.unsqueeze(1)).float()
            return logits.softmax(dim=-1)[:, target_index]                 # b×T

        scores = engine.map_cat(score_batch, len(channels), section="score_difference",
                                key=f"scorecam:{model.name}:{tuple(x.shape)}",
                                progress=progress, message="Score-CAM: masked inputs")
        if weighting == "softmax":
            weights = scores.softmax(dim=0)  # softmax(scores − baseline): the baseline cancels
        else:
            with engine.precision("score_difference"):
                baseline = model.module(torch.zeros_like(x).unsqueeze(0)).float().softmax(dim=-1)[0, target_index]
            weights = scores - baseline
        maps = weighted_sum(weights.T, chosen)
    return MethodOutput(maps=to_input_size(maps, x), extras={"layer": layer, "channels_used": int(len(channels))})


def _scorecam(model: LoadedModel, x: torch.Tensor, targets: list[int], *, engine: Engine,
              progress: Progress | None = None, layer: str, weighting: str) -> MethodOutput:
    """Score-CAM over every channel of ``layer``: T×H×W."""
    return score_cam(model, x, targets, layer, engine=engine, progress=progress, weighting=weighting)


def _faster_scorecam(model: LoadedModel, x: torch.Tensor, targets: list[int], *, engine: Engine,
                     progress: Progress | None = None, layer: str, weighting: str, max_n: int) -> MethodOutput:
    """Score-CAM over the ``max_n`` channels of largest spatial variance: T×H×W."""
    return score_cam(model, x, targets, layer, engine=engine, progress=progress, weighting=weighting,
                     max_n=max_n)


WEIGHTING = Param(str, "softmax", choices=WEIGHTINGS, widget="radio",
                  help="softmax over channels of the score increase (paper), or the raw increase (cic)")

SCORECAM = cam_method(
    "scorecam", "Score-CAM", _scorecam, params={"weighting": WEIGHTING},
    reference="pytorch-grad-cam ScoreCAM (softmax target)",
    description="Feature maps weighted by the target score of the input masked by each map "
                "(Wang et al. 2020); one forward pass per channel.")
FASTER_SCORECAM = cam_method(
    "faster_scorecam", "Faster Score-CAM", _faster_scorecam,
    params={"weighting": WEIGHTING,
            "max_n": Param(int, 32, 1, 4096, widget="log_slider", label="max N",
                           help="number of channels scored (largest spatial variance first)")},
    reference="Score-CAM (equal with max_n = all channels)",
    description="Score-CAM on the max_N channels of largest activation variance only.")
