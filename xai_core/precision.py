"""The one precision policy: which computations may run in reduced precision on CUDA.

On CUDA, a section marked ``MIXED`` runs under ``torch.autocast`` (bfloat16 where the GPU
supports it, else float16); a section marked ``FP32`` runs with autocast switched off, even
inside a mixed section. On the CPU every section is float32: CPU autocast is slower than
float32 on the machines we measured and would change results for no gain.

Why each section is what it is:

- ``gradients`` (saliency, SmoothGrad, Guided Backprop, DeconvNet, input × gradient) and
  ``cam`` (one layer's activation and its gradients): maps are read by their ranking and
  shape; bf16/fp16 keeps their correlation with fp32 at r ≥ 0.99 (``tests/test_precision.py``
  on a GPU).
- ``masked_forward`` (RISE): thousands of masked probabilities averaged; each one's rounding
  error averages out. The weighted sum itself is an ``FP32`` accumulation.
- ``path_integral`` (IG, RIG): completeness Σ IG = F(x) − F(x') is reported per target and
  must hold up to the quadrature error, not to the rounding of half precision.
- ``score_difference`` (occlusion, Score-CAM, Ablation-CAM, the CAM head check): the result
  is a difference of two close scores; half precision would drown it.
- ``logits`` (logit tables, regression targets, support-network training) and
  ``optimisation`` (inversion): exact numbers are shown or followed step by step.
"""
from __future__ import annotations

import contextlib

import torch

MIXED, FP32 = "mixed", "fp32"

SECTIONS: dict[str, str] = {
    "gradients": MIXED,
    "cam": MIXED,
    "masked_forward": MIXED,
    "path_integral": FP32,
    "score_difference": FP32,
    "logits": FP32,
    "optimisation": FP32,
    "accumulation": FP32,
}


def half_dtype() -> torch.dtype:
    """bfloat16 where the current GPU supports it (same range as float32), else float16."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def section(device: torch.device, name: str, *, mixed_allowed: bool = True) -> contextlib.AbstractContextManager:
    """The autocast context for section ``name`` on ``device`` (see ``SECTIONS``).

    ``mixed_allowed=False`` (an engine built with ``autocast=False``) makes every section fp32.
    """
    try:
        policy = SECTIONS[name]
    except KeyError:
        raise ValueError(f"Unknown precision section '{name}'; known: {', '.join(SECTIONS)}.") from None
    if device.type != "cuda":
        return contextlib.nullcontext()
    if policy == MIXED and mixed_allowed:
        return torch.autocast("cuda", dtype=half_dtype())
    return torch.autocast("cuda", enabled=False)  # actively off: an enclosing section may be mixed
