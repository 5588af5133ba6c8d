"""The embedded vision transformer: a convolutional patch embedding, a class token, a few encoder blocks.

Dosovitskiy et al. 2021 at toy scale, with timm's ``VisionTransformer`` attribute names so
that whatever reads a timm ViT reads this one: ``patch_embed`` (``.backbone``, ``.proj``,
``.grid_size``, as timm's ``HybridEmbed``), ``cls_token``, ``pos_embed``, ``num_prefix_tokens = 1``
(the class token is token 0), ``blocks[i].norm1/attn/norm2/mlp`` (``attn.qkv``, ``attn.proj``,
``mlp.fc1/act/fc2``), ``norm`` and ``head``, which reads the class token; with the same weights
it computes exactly what timm's ViT computes (``tests/test_embedded_model.py``).

The patch embedding is a stem of three stride-2 3×3 convolutions and a 1×1 projection
(Xiao et al. 2021, "Early convolutions help transformers see better"), one token per 8×8
pixels: with timm's linear 8 px patchify the same transformer stayed at chance (loss ln 8)
for its first two epochs, 750 steps, when the CNNs were past 80 % training accuracy.
Attention always goes through ``torch.nn.functional.scaled_dot_product_attention``, the one
place attention rollout needs to observe; every activation is GELU, so there is no ReLU.
The CAM family reads the token grid of ``DEFAULT_LAYER``, the last block's ``norm1`` (as
pytorch-grad-cam's ViT tutorial does: the last ``norm`` only feeds the class token to the head).
Trained on the procedural dataset by ``scripts/train_embedded.py --arch embedded_vit``.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from . import dataset

DEPTH = 4
STEM_CHANNELS = (24, 48, 64)  # each conv halves the side: 64 -> 8 px, an 8×8 token grid
_LAYER_NORM_EPS = 1e-6  # timm's ViT value (torch's default is 1e-5): the same weights give timm's outputs
DEFAULT_LAYER = f"blocks.{DEPTH - 1}.norm1"
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.norm1\.weight$")


class PatchEmbed(nn.Module):
    """B×3×H×W -> B×N×D tokens: the conv stem (``backbone``), then a 1×1 projection (``proj``)
    of each cell of its (H/8)×(W/8) map; ``patch_size`` is the projection's, on that map, as in timm."""

    def __init__(self, img_size: int, embed_dim: int):
        super().__init__()
        layers, cin = [], 3
        for cout in STEM_CHANNELS:
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]
            cin = cout
        self.backbone = nn.Sequential(*layers)
        self.proj = nn.Conv2d(cin, embed_dim, 1)
        self.img_size = (img_size, img_size)
        self.patch_size = (1, 1)
        side = img_size // 2 ** len(STEM_CHANNELS)
        self.grid_size = (side, side)
        self.num_patches = side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(x)).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention over B×N×D tokens via ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm encoder block: x + attn(norm1(x)), then + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=_LAYER_NORM_EPS)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EmbeddedViT(nn.Module):
    """64×64 RGB -> ``num_classes`` logits from the class token after ``depth`` blocks."""

    num_prefix_tokens = 1

    def __init__(self, num_classes: int = len(dataset.CLASSES), embed_dim: int = 64, depth: int = DEPTH,
                 mlp_dim: int = 128, num_heads: int = 4):
        super().__init__()
        self.embed_dim = self.num_features = embed_dim
        self.patch_embed = PatchEmbed(dataset.IMAGE_SIZE, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + self.patch_embed.num_patches, embed_dim))
        self.blocks = nn.Sequential(*(Block(embed_dim, num_heads, mlp_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim, eps=_LAYER_NORM_EPS)
        self.head = nn.Linear(embed_dim, num_classes)
        self._initialise()

    def _initialise(self) -> None:
        """timm's ViT initialisation: truncated normal (std 0.02) tokens and linear weights, zero biases."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×64×64 -> B×(1+N)×D normalised tokens, the class token first."""
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1) + self.pos_embed
        return self.norm(self.blocks(tokens))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the class token of ``forward_features``' output."""
        return self.head(x[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def hyperparameters(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """``embed_dim``, ``depth`` and ``mlp_dim`` of an ``EmbeddedViT`` state dict (those its keys
    show; the head count cannot be read from weights and stays the default)."""
    found: dict[str, int] = {}
    if (proj := state.get("patch_embed.proj.weight")) is not None and proj.ndim == 4:
        found["embed_dim"] = proj.shape[0]
    if depth := sum(1 for key in state if _BLOCK_KEY.match(key)):
        found["depth"] = depth
    if (fc1 := state.get("blocks.0.mlp.fc1.weight")) is not None and fc1.ndim == 2:
        found["mlp_dim"] = fc1.shape[0]
    return found
