"""All explanation methods by name. A new method is one module plus one line here."""
from __future__ import annotations

from . import integrated_gradients, saliency
from . import rise
from . import occlusion
from . import backprop_rules, cam, scorecam, smoothgrad
from .base import Method

METHODS: dict[str, Method] = {m.name: m for m in [
    saliency.SALIENCY,
    saliency.GRADIENT,
    saliency.GRAD_X_INPUT,
    smoothgrad.SMOOTHGRAD, backprop_rules.GUIDED_BACKPROP, backprop_rules.DECONVNET,
    cam.CAM, cam.GRADCAM, cam.GRADCAMPP, cam.GUIDED_GRADCAM, scorecam.SCORECAM, scorecam.FASTER_SCORECAM,
    integrated_gradients.IG,
    rise.RISE,
    occlusion.OCCLUSION,
]}
