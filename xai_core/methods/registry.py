"""All explanation methods by name. A new method is one module plus one line here."""
from __future__ import annotations

from . import saliency
from .base import Method

METHODS: dict[str, Method] = {m.name: m for m in [
    saliency.SALIENCY,
    saliency.GRADIENT,
    saliency.GRAD_X_INPUT,
]}
