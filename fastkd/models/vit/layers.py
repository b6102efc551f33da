"""Blocks shared by the ViTs written in fastkd, named as the reference names them so checkpoints map one to one."""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp

from ...kernels.global_batch import draw_for_global_batch


class GlobalDropPath(DropPath):
    """timm's DropPath with the per-sample keep mask drawn for the whole global batch and sliced under torchrun.

    timm draws the mask for the rank's rows only, so N ranks would drop other samples than one process. In one
    process this is timm's drop_path draw for draw (same op, shape and dtype), so single-process results do not
    change.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1 - self.drop_prob
        tail = (1,) * (x.ndim - 1)
        mask = draw_for_global_batch(x.shape[0], lambda rows: x.new_empty((rows, *tail)).bernoulli_(keep_prob))
        if keep_prob > 0.0 and self.scale_by_keep:
            mask = mask / keep_prob
        return x * mask


def use_global_drop_path(model: nn.Module) -> nn.Module:
    """Replace every timm DropPath in `model` (timm's own blocks included) by a GlobalDropPath of the same rate."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is DropPath:
                setattr(parent, name, GlobalDropPath(child.drop_prob, child.scale_by_keep))
    return model


def with_global_drop_path(entrypoint: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorate a ViT entrypoint so the model it builds draws drop path for the global batch (GlobalDropPath)."""
    @functools.wraps(entrypoint)
    def build(*args, **kwargs) -> nn.Module:
        return use_global_drop_path(entrypoint(*args, **kwargs))
    return build


def drop_path_or_identity(rate: float) -> nn.Module:
    """The reference builds DropPath only for a positive rate (an Identity otherwise)."""
    return GlobalDropPath(rate) if rate > 0.0 else nn.Identity()


class TokenAttention(nn.Module):
    """Multi-head self-attention with the reference's parameter names (`qkv_transform`, `projection`).

    Scores use the fused SDPA kernel; the scale is the reference's (head_dim ** -0.5).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv_transform = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.projection = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv_transform(x).view(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.projection(out.transpose(1, 2).reshape(batch, tokens, dim))


class TransformerLayer(nn.Module):
    """Pre-norm ViT block (reference `TransformerLayer`): norm1, attn, drop_path, norm2, mlp."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = False,
                 drop_path: float = 0.0, ln_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = TokenAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.drop_path = drop_path_or_identity(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

