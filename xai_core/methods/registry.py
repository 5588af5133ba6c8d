"""All explanation methods by name. A new method is one module plus one line here: the CLI, the
pages, the README table and the contract tests all read this table.

Every method with a batched input attribution (``Method.attribute``) can also be wrapped by
the noise tunnel, which is therefore built last, over those methods.
"""
from __future__ import annotations

from . import backprop_rules, cam, integrated_gradients, occlusion, rise, saliency, scorecam, smoothgrad
from . import ablationcam, eigencam, hirescam, layercam, rollout, xgradcam
from .base import Method

_METHODS: list[Method] = [
    saliency.SALIENCY,
    saliency.GRADIENT,
    saliency.GRAD_X_INPUT,
    backprop_rules.GUIDED_BACKPROP,
    backprop_rules.DECONVNET,
    cam.CAM,
    cam.GRADCAM,
    cam.GRADCAMPP,
    cam.GUIDED_GRADCAM,
    scorecam.SCORECAM,
    scorecam.FASTER_SCORECAM,
    xgradcam.XGRADCAM,
    hirescam.HIRESCAM,
    layercam.LAYERCAM,
    eigencam.EIGENCAM,
    ablationcam.ABLATIONCAM,
    integrated_gradients.IG,
    rise.RISE,
    occlusion.OCCLUSION,
    rollout.ROLLOUT,
]

METHODS: dict[str, Method] = {m.name: m for m in _METHODS}
METHODS["smoothgrad"] = smoothgrad.noise_tunnel_method({m.name: m for m in _METHODS if m.composable})
