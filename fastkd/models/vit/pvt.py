"""PVT-Ti (v1), written from timm's blocks since timm has only PVTv2. Parameter names follow the reference."""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import Mlp, calculate_drop_path_rates, trunc_normal_
from timm.models.pvt_v2 import Attention as SpatialReductionAttention

from ..registry import register_model
from .layers import drop_path_or_identity, with_global_drop_path

LN_EPS = 1e-6
Ints = tuple[int, ...]


class PVTBlock(nn.Module):
    """Pre-norm block with spatial-reduction attention and a plain GELU MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = SpatialReductionAttention(dim, num_heads=num_heads, sr_ratio=sr_ratio, qkv_bias=True)
        if self.attn.norm is not None:
            self.attn.norm.eps = LN_EPS
        self.drop_path_rate = drop_path_or_identity(drop_path)  # the reference's attribute name
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path_rate(self.attn(self.norm1(x), grid))
        return x + self.drop_path_rate(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches (conv kernel = stride = patch) followed by LayerNorm."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        grid = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), grid


class PVT(nn.Module):
    """Four stages of patch embedding + learned position embedding + blocks; the class token joins in the last
    stage only and its normed state is the image feature."""

    def __init__(self, img_size: int = 224, num_classes: int = 100, patch_sizes: Ints = (4, 2, 2, 2),
                 embed_dims: Ints = (64, 128, 320, 512), depths: Ints = (2, 2, 2, 2), num_heads: Ints = (1, 2, 5, 8),
                 mlp_ratios: Ints = (8, 8, 4, 4), sr_ratios: Ints = (8, 4, 2, 1), drop_path_rate: float = 0.1):
        super().__init__()
        self.num_stages = len(depths)
        rates = calculate_drop_path_rates(drop_path_rate, sum(depths))
        grid, in_chans, first_block = img_size, 3, 0
        for i in range(self.num_stages):
            grid //= patch_sizes[i]
            if grid < 1:
                raise ValueError(f"image size {img_size} is too small for PVT's patch sizes {patch_sizes}")
            tokens = grid * grid + (1 if i == self.num_stages - 1 else 0)
            setattr(self, f"patch_embed{i + 1}", PatchEmbed(patch_sizes[i], in_chans, embed_dims[i]))
            setattr(self, f"pos_embed{i + 1}", nn.Parameter(torch.zeros(1, tokens, embed_dims[i])))
            setattr(self, f"block{i + 1}", nn.ModuleList(
                PVTBlock(embed_dims[i], num_heads[i], mlp_ratios[i], sr_ratios[i], rates[first_block + j])
                for j in range(depths[i])))
            first_block += depths[i]
            in_chans = embed_dims[i]
        self.norm = nn.LayerNorm(embed_dims[-1], eps=LN_EPS)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims[-1]))
        self.head = nn.Linear(embed_dims[-1], num_classes)

        for i in range(self.num_stages):
            trunc_normal_(getattr(self, f"pos_embed{i + 1}"), std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_linear_and_norm)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_stages):
            x, grid = getattr(self, f"patch_embed{i + 1}")(x)
            if i == self.num_stages - 1:
                x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
            x = x + getattr(self, f"pos_embed{i + 1}")
            for block in getattr(self, f"block{i + 1}"):
                x = block(x, grid)
            if i != self.num_stages - 1:
                x = x.transpose(1, 2).reshape(x.shape[0], -1, *grid)
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _init_linear_and_norm(module: nn.Module) -> None:
    """Linear: trunc-normal(0.02) weights, zero bias; LayerNorm: ones/zeros (convolutions keep torch's init)."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@register_model
@with_global_drop_path
def pvt_tiny(num_classes: int = 100, img_size: int = 224, drop_path_rate: float = 0.1,
             depth: tuple[int, int, int, int] = (2, 2, 2, 2)) -> PVT:
    """PVT-Ti: dims 64/128/320/512, heads 1/2/5/8, MLP ratios 8/8/4/4, SR 8/4/2/1; `depth` per stage."""
    return PVT(img_size=img_size, num_classes=num_classes, depths=depth, drop_path_rate=drop_path_rate)
