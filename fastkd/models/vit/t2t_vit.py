"""T2T-ViT-7/-14 (tokens-to-token with Performer attention), written from timm's blocks. Reference names."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from timm.layers import Mlp, calculate_drop_path_rates

from ..registry import register_model
from .layers import TransformerLayer, with_global_drop_path

LN_EPS = 1e-6
# (kernel, stride, padding) of the three soft splits; each divides the grid by its stride.
SOFT_SPLITS = ((7, 4, 2), (3, 2, 1), (3, 2, 1))
TOKEN_DIM = 64


class PerformerAttention(nn.Module):
    """Single-head linear attention with positive random features (FAVOR+), the reference's T2T variant.

    The random projection `w` is a fixed, non-trainable parameter (it is saved in checkpoints). Its kernel
    features run in `w`'s dtype with autocast off, as the reference forces float32 there.
    The residual adds `v` because the input and output widths differ.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_ratio: float = 0.5):
        super().__init__()
        self.out_dim = out_dim
        self.qkv_transform = nn.Linear(in_dim, out_dim * 3)
        self.projection = nn.Linear(out_dim, out_dim)
        self.num_features = int(out_dim * kernel_ratio)
        w = nn.init.orthogonal_(torch.randn(self.num_features, out_dim)) * math.sqrt(self.num_features)
        self.w = nn.Parameter(w, requires_grad=False)

    def _positive_features(self, x: torch.Tensor) -> torch.Tensor:
        """exp(w x - |x|^2 / 2) / sqrt(m)."""
        return torch.exp(x @ self.w.t() - (x * x).sum(dim=-1, keepdim=True) / 2) / math.sqrt(self.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, q, v = torch.split(self.qkv_transform(x), self.out_dim, dim=-1)  # the reference's order: k, q, v
        with torch.autocast(device_type=x.device.type, enabled=False):
            k, q, v_kernel = (t.to(self.w.dtype) for t in (k, q, v))
            kp, qp = self._positive_features(k), self._positive_features(q)
            normaliser = qp @ kp.sum(dim=1).unsqueeze(-1)  # (B, T, 1)
            y = (qp @ (v_kernel.transpose(1, 2) @ kp).transpose(1, 2)) / (normaliser + 1e-8)
        return v + self.projection(y)


class PerformerLayer(nn.Module):
    """Width-changing token layer: x = attn(norm1(x)); x += mlp(norm2(x)) (no residual around attention)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(in_dim, eps=LN_EPS)
        self.attn = PerformerAttention(in_dim, out_dim)
        self.norm2 = nn.LayerNorm(out_dim, eps=LN_EPS)
        self.mlp = Mlp(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Token2TokenModule(nn.Module):
    """Soft split (unfold) -> Performer layer -> re-structurise, twice, then a final soft split and projection."""

    def __init__(self, embed_dim: int):
        super().__init__()
        (k0, s0, p0), *later = SOFT_SPLITS
        self.soft_split0 = nn.Unfold(kernel_size=k0, stride=s0, padding=p0)
        self.soft_split = nn.ModuleList(nn.Unfold(kernel_size=k, stride=s, padding=p) for k, s, p in later)
        widths = [3 * k0 * k0] + [TOKEN_DIM * k * k for k, _, _ in later]
        self.attention = nn.ModuleList(PerformerLayer(width, TOKEN_DIM) for width in widths[:-1])
        self.projection = nn.Linear(widths[-1], embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        height, width = _unfolded_grid(height, width, SOFT_SPLITS[0])
        x = self.soft_split0(x).transpose(1, 2)
        for attention, soft_split, split_params in zip(self.attention, self.soft_split, SOFT_SPLITS[1:]):
            x = attention(x).transpose(1, 2).reshape(x.shape[0], TOKEN_DIM, height, width)
            height, width = _unfolded_grid(height, width, split_params)
            x = soft_split(x).transpose(1, 2)
        return self.projection(x)


def _unfolded_grid(height: int, width: int, split: tuple[int, int, int]) -> tuple[int, int]:
    kernel, stride, padding = split
    return (height + 2 * padding - kernel) // stride + 1, (width + 2 * padding - kernel) // stride + 1


def sinusoid_position_embedding(tokens: int, dim: int) -> torch.Tensor:
    """The fixed sin/cos table: angle(pos, j) = pos / 10000^(2*(j//2)/dim), sin on even j, cos on odd j.

    Computed in float64 and rounded to float32, as the reference's numpy table is.
    """
    position = torch.arange(tokens, dtype=torch.float64).unsqueeze(1)
    exponent = 2 * (torch.arange(dim) // 2).to(torch.float64) / dim
    angle = position / torch.pow(torch.tensor(10000.0, dtype=torch.float64), exponent)
    table = torch.where(torch.arange(dim) % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.to(torch.float32).unsqueeze(0)


class T2TViT(nn.Module):
    """Tokens-to-token module, class token, fixed sinusoidal position embedding, ViT layers without qkv bias."""

    def __init__(self, img_size: int, num_classes: int, embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float, drop_path_rate: float):
        super().__init__()
        grid = img_size
        for split in SOFT_SPLITS:
            grid = _unfolded_grid(grid, grid, split)[0]
        if grid < 1:
            raise ValueError(f"image size {img_size} is too small for T2T-ViT (needs at least 16)")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.t2t_module = Token2TokenModule(embed_dim)
        self.pos_embed = nn.Parameter(sinusoid_position_embedding(grid * grid + 1, embed_dim), requires_grad=False)
        self.layers = nn.ModuleList(
            TransformerLayer(embed_dim, num_heads, mlp_ratio, qkv_bias=False, drop_path=rate, ln_eps=LN_EPS)
            for rate in calculate_drop_path_rates(drop_path_rate, depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.normal_(self.cls_token, std=0.02)
        self.apply(_init_linear_and_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.t2t_module(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x)[:, 0])


def _init_linear_and_norm(module: nn.Module) -> None:
    """Linear: normal(0.02) weights (not truncated, as the reference), zero bias; LayerNorm: ones/zeros."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@register_model
@with_global_drop_path
def t2t_vit_7(num_classes: int = 100, img_size: int = 224, drop_path_rate: float = 0.1, depth: int = 7) -> T2TViT:
    """T2T-ViT-7: dim 256, 4 heads, MLP ratio 2."""
    return T2TViT(img_size, num_classes, embed_dim=256, depth=depth, num_heads=4, mlp_ratio=2,
                  drop_path_rate=drop_path_rate)


@register_model
@with_global_drop_path
def t2t_vit_14(num_classes: int = 100, img_size: int = 224, drop_path_rate: float = 0.1, depth: int = 14) -> T2TViT:
    """T2T-ViT-14: dim 384, 6 heads, MLP ratio 3."""
    return T2TViT(img_size, num_classes, embed_dim=384, depth=depth, num_heads=6, mlp_ratio=3,
                  drop_path_rate=drop_path_rate)
