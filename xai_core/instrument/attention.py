"""Recording the attention probabilities of every attention layer of a forward pass.

Transformers compute attention in two ways that both reach PyTorch as a function call:
``F.scaled_dot_product_attention`` (timm's ViT, DeiT, Swin and the embedded ViT, fused by
default, so no softmax tensor ever exists to hook), and ``nn.MultiheadAttention`` (torchvision's
ViT), which calls ``F.multi_head_attention_forward``. ``recording_attention`` opens a
thread-local ``TorchFunctionMode`` (as ``relu_rules`` does) that intercepts both:

- for ``scaled_dot_product_attention`` it computes P = softmax(Q Kᵀ · scale + mask) explicitly
  (scale 1/√d unless given; a boolean mask keeps its True entries, a float mask is added;
  ``is_causal`` keeps the lower triangle; grouped-query keys are repeated per head; dropout is
  ignored, as in eval mode), and lets the call itself run unchanged;
- for ``multi_head_attention_forward`` it asks the function for its per-head weights
  (``need_weights=True, average_attn_weights=False``, the same softmax) and returns what the
  caller asked for. ``nn.MultiheadAttention`` skips its fused fast path whenever a
  torch-function mode is active, so the functional form is what it calls.

Calls made inside these two functions are not seen again (a mode is suspended while it handles
a call), so each attention layer is recorded once, in the order the forward pass runs them.
Attention computed by hand (a matmul and a softmax, as in torchvision's Swin windows or timm's
attention with fused attention switched off) is invisible here. Nothing is written on the model,
and another thread running the same model at the same time is not affected.
"""
from __future__ import annotations

import contextlib
import inspect
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)


def attention_probabilities(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor | None = None,
                            attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0, is_causal: bool = False,
                            scale: float | None = None, enable_gqa: bool = False) -> torch.Tensor:
    """softmax(Q Kᵀ · scale + mask) in fp32 for ``scaled_dot_product_attention``'s arguments:
    …×heads×L×S (``value`` and ``dropout_p`` are accepted and unused)."""
    q, k = query.detach().float(), key.detach().float()
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    with torch.autocast(q.device.type, enabled=False):
        logits = q @ k.transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
        if is_causal:
            keep = torch.ones(logits.shape[-2:], dtype=torch.bool, device=logits.device).tril()
            logits = logits.masked_fill(~keep, float("-inf"))
        if attn_mask is not None:
            mask = attn_mask.detach()
            logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask.float()
        return logits.softmax(dim=-1)


class _AttentionRecorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.probabilities: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.probabilities.append(attention_probabilities(*args, **kwargs))
            return func(*args, **kwargs)
        if func is F.multi_head_attention_forward:
            call = _MHA_SIGNATURE.bind(*args, **kwargs)
            call.apply_defaults()
            wanted, averaged = call.arguments["need_weights"], call.arguments["average_attn_weights"]
            call.arguments.update(need_weights=True, average_attn_weights=False)
            output, weights = func(*call.args, **call.kwargs)
            self.probabilities.append((weights if weights.dim() == 4 else weights.unsqueeze(0)).detach().float())
            return output, (weights.mean(dim=-3) if averaged else weights) if wanted else None
        return func(*args, **kwargs)


@contextlib.contextmanager
def recording_attention() -> Iterator[list[torch.Tensor]]:
    """Within the block, the attention probabilities of every attention layer the current thread
    runs are appended to the yielded list, each B×heads×L×S, fp32, detached, in execution order."""
    recorder = _AttentionRecorder()
    with recorder:
        yield recorder.probabilities
