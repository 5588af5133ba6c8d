"""Eigen-CAM (Muhammad & Yeasin 2020, "Eigen-CAM: Class Activation Map using Principal Components").

Class-agnostic: no gradient and no target. The activation A (K×h×w) of ``layer`` is read as
h·w observations of K channels, centred per channel, and projected on its first principal
component (the first right singular vector v₁ of the centred h·w×K matrix):

    M = ReLU((Aᵀ − mean) v₁),   reshaped to h×w and upsampled like every CAM.

Centring and the ReLU follow pytorch-grad-cam's ``EigenCAM`` (``get_2d_projection``; the ReLU is
its ``BaseCAM``'s), which this equals up to the sign of v₁.

**Sign convention.** An SVD determines v₁ only up to sign, and the ReLU then keeps one half
of the map or the other. pytorch-grad-cam leaves the sign to LAPACK (so it can change with
the library build or a tiny change of the input); its Seg-Eigen-CAM flips the map when
|min| > |max|. We orient v₁ so that the projection correlates positively with the
channel-mean activation map (mean_k A_k): the principal direction points towards "more
activation", so the map highlights where the layer responds strongly. ``extras`` reports
``explained_variance``, the share of the centred activation's variance that v₁ carries.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import ParameterError
from .base import MethodOutput
from .cam_pipeline import cam_method, read_layer, to_input_size

if TYPE_CHECKING:
    from ..engine import Engine, Progress
    from ..model_handle import LoadedModel


def oriented_principal_projection(activation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """K×h×w -> (projection on the oriented first principal component, h×w; its variance share)."""
    observations = activation.flatten(1).T                                  # h·w × K
    centred = observations - observations.mean(dim=0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = centred @ vh[0]
    channel_mean = activation.mean(dim=0).flatten()
    agreement = (projection * (channel_mean - channel_mean.mean())).sum()
    projection = projection * torch.where(agreement < 0, -1.0, 1.0)        # no host sync
    share = singular[0] ** 2 / (singular ** 2).sum().clamp(min=torch.finfo(singular.dtype).tiny)
    return projection.view(activation.shape[1:]), share


def _eigencam(model: LoadedModel, x: torch.Tensor, targets: list[int], *, engine: Engine,
              progress: Progress | None = None, layer: str) -> MethodOutput:
    """Eigen-CAM of ``x`` at ``layer``: one map, 1×H×W, whatever the targets."""
    activation = read_layer(model, x, targets, layer, engine=engine, gradients=False).activation
    if activation.shape[-2:].numel() == 1:
        raise ParameterError(f"Layer '{layer}' has 1×1 feature maps; Eigen-CAM needs spatial maps.")
    projection, share = oriented_principal_projection(activation)
    return MethodOutput(maps=to_input_size(projection.unsqueeze(0), x),
                        extras={"layer": layer, "explained_variance": share})


EIGENCAM = cam_method(
    "eigencam", "Eigen-CAM", _eigencam, class_agnostic=True,
    reference="pytorch-grad-cam EigenCAM (sign fixed)",
    description="First principal component of the feature maps; class-agnostic, no gradients "
                "(Muhammad & Yeasin 2020).")
