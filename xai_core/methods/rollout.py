"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

How much of each input token has flowed into the class token after the last layer, if the
attention of every layer is taken as the mixing of tokens and the residual connection as an
equal share of identity. One forward pass records every layer's attention probabilities
(``instrument.attention``: P_l, heads×T×T); for each layer

    Ā_l = fuse_heads(P_l)                 (``head_fusion``: mean, max or min over heads)
    Ā_l ← Ā_l with its ``discard_ratio`` lowest entries set to 0 (optional)
    Â_l = rownorm(Ā_l + I)                (the residual; rows sum to 1 again)

and the rollout is R = Â_L ⋯ Â_2 Â_1. The map is the class token's row of R over the patch
tokens (the prefix tokens — class, distillation, register — dropped, ``instrument.layout``),
on the patch grid, upsampled bilinearly to the input size like the CAMs; unnormalised (rows
of R sum to 1, so the map's sum is the class token's share that comes from the patches).
Class-agnostic: attention does not depend on the target.

``discard_ratio`` follows jacobgil/vit-explain (``vit_rollout.py``): the given fraction of the
smallest entries of each fused T×T matrix is zeroed, never the class token's attention to
itself. Two differences from that code: we renormalise the rows of Ā + I as the paper does
(vit-explain divides by ``a.sum(dim=-1)`` without ``keepdim``, which broadcasts the row sums
over columns), and we discard per image (it does so for the first image of the batch only).
vit-explain also divides the map by its maximum, which we leave to display.

Defined only for global self-attention over one token set with a class token: a CNN has no
attention, Swin attends within windows (torchvision's Swin, and timm's by default, compute it by
hand, out of sight; with timm's fused attention on, the kernel runs on a batch of B × windows),
and a transformer without a class token has no row to read; each is refused with its reason.
Attention written out by hand is not seen (``instrument.attention``): a timm ViT with fused
attention switched off (``TIMM_FUSED_ATTN=0``) is refused like a CNN. The forward pass runs in the
``cam`` precision section; the products of the rollout are fp32.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import ParameterError
from ..instrument.attention import recording_attention
from ..instrument.layout import token_grid
from .base import Method, MethodOutput, Param
from .cam_pipeline import upsample

if TYPE_CHECKING:
    from ..engine import Engine, Progress
    from ..model_handle import LoadedModel

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(probabilities: torch.Tensor, head_fusion: str) -> torch.Tensor:
    """B×heads×T×T -> B×T×T: the mean, max or min over heads."""
    if head_fusion == "mean":
        return probabilities.mean(dim=1)
    return probabilities.amax(dim=1) if head_fusion == "max" else probabilities.amin(dim=1)


def discard_lowest(fused: torch.Tensor, ratio: float) -> torch.Tensor:
    """B×T×T with the ``ratio`` smallest entries of each image's matrix set to 0, entry (0, 0) kept."""
    flat = fused.flatten(1)
    count = int(flat.shape[1] * ratio)
    if count == 0:
        return fused
    lowest = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, flat.topk(count, dim=1, largest=False).indices, True)
    lowest[:, 0] = False
    return flat.masked_fill(lowest, 0).view_as(fused)


def rollout(attentions: list[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0) -> torch.Tensor:
    """The rollout R = Â_L ⋯ Â_1 of per-layer attention probabilities (each B×heads×T×T): B×T×T, fp32."""
    first = attentions[0]
    eye = torch.eye(first.shape[-1], device=first.device)
    result = eye.expand(first.shape[0], -1, -1)
    for probabilities in attentions:
        fused = discard_lowest(fuse_heads(probabilities.float(), head_fusion), discard_ratio) + eye
        result = (fused / fused.sum(dim=-1, keepdim=True)) @ result
    return result


def _refusal(model: LoadedModel, reason: str) -> ParameterError:
    return ParameterError(f"Attention rollout needs global self-attention with a class token (a ViT or DeiT); "
                          f"{model.name} {reason}.")


def class_token_maps(model: LoadedModel, xs: torch.Tensor, attentions: list[torch.Tensor], head_fusion: str,
                     discard_ratio: float) -> torch.Tensor:
    """The class token's rollout row over the patch grid of each image of ``xs``, upsampled: B×H×W."""
    if not attentions:
        raise _refusal(model, "has no attention computed by scaled_dot_product_attention or nn.MultiheadAttention "
                              "(a CNN; attention written out by hand, as in Swin's windows, is not seen)")
    shapes = {tuple(a.shape[-2:]) for a in attentions}
    tokens = attentions[0].shape[-1]
    if any(a.shape[0] != len(xs) for a in attentions) or shapes != {(tokens, tokens)}:
        raise _refusal(model, "attends within windows or over changing sets of tokens (as Swin does)")
    prefix, grid = token_grid(model.module, tokens)
    if prefix == 0 or getattr(model.module, "has_class_token", True) is False:
        raise _refusal(model, f"has no class token among its {tokens} tokens")
    with torch.autocast(xs.device.type, enabled=False):
        row = rollout(attentions, head_fusion, discard_ratio)[:, 0, prefix:]
    return upsample(row.unflatten(-1, grid), xs.shape[-2:])


def _rollout_batch(model: LoadedModel, xs: torch.Tensor, targets: torch.Tensor, *, engine: Engine,
                   progress: Progress | None = None, head_fusion: str, discard_ratio: float) -> MethodOutput:
    """Attention rollout of every image of ``xs`` (B×C×H×W): maps B×1×H×W, whatever the targets."""
    def batch(start: int, stop: int) -> torch.Tensor:
        with torch.no_grad(), recording_attention() as attentions:
            model.module(xs[start:stop])
        return class_token_maps(model, xs[start:stop], attentions, head_fusion, discard_ratio)

    maps = engine.map_cat(batch, len(xs), section="cam", key=f"rollout:{model.name}:{tuple(xs.shape[1:])}",
                          progress=progress, message="Attention rollout: images")
    return MethodOutput(maps=maps.unsqueeze(1))


def _rollout(model: LoadedModel, x: torch.Tensor, targets: list[int], *, engine: Engine,
             progress: Progress | None = None, head_fusion: str, discard_ratio: float) -> MethodOutput:
    """Attention rollout of ``x``: one map, 1×H×W, whatever the targets."""
    out = _rollout_batch(model, x.unsqueeze(0), torch.as_tensor([targets], device=x.device), engine=engine,
                         progress=progress, head_fusion=head_fusion, discard_ratio=discard_ratio)
    return MethodOutput(maps=out.maps[0])


ROLLOUT = Method(
    "rollout", "Attention rollout", "attention", _rollout, class_agnostic=True, batch_fn=_rollout_batch,
    params={"head_fusion": Param(str, "mean", choices=HEAD_FUSIONS, widget="radio",
                                 help="how each layer's heads are combined"),
            "discard_ratio": Param(float, 0.0, 0.0, 0.99, step=0.05,
                                   help="fraction of each layer's smallest fused attentions set to zero "
                                        "(vit-explain); 0 is the paper's rollout")},
    reference="direct reference (attention recomputed from the qkv weights, rollout by hand)",
    description="Attention of the class token to the patches, multiplied through the layers with the "
                "residual as identity (Abnar & Zuidema 2020); class-agnostic, transformers only.")
