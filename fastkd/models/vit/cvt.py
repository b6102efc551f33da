"""CvT-13, written from timm's blocks since timm has no CvT. Parameter names follow the reference."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp, calculate_drop_path_rates, trunc_normal_
from timm.layers.activations import QuickGELU

from ..registry import register_model
from .layers import drop_path_or_identity, with_global_drop_path

LN_EPS = 1e-5  # the CvT configs' TRANSFORMER.LN_EPS (every other reference ViT uses 1e-6)


def _depthwise_bn(dim: int, stride: int) -> nn.Sequential:
    """3x3 depthwise conv (no bias) + BatchNorm: CvT's convolutional token projection (`dw_bn`)."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(dim, dim, kernel_size=3, padding=1, stride=stride, bias=False, groups=dim),
        bn=nn.BatchNorm2d(dim),
    ))


class ConvAttention(nn.Module):
    """Attention whose q/k/v come from depthwise-conv+BN projections of the token map (k/v at stride 2).

    A class token skips the convolutions and is prepended to q, k and v. Scores are scaled by dim ** -0.5 (the
    whole width, not the head width), as CvT does.
    """

    def __init__(self, dim: int, num_heads: int, has_cls_token: bool, kv_stride: int = 2):
        super().__init__()
        self.num_heads = num_heads
        self.scale = dim ** -0.5
        self.has_cls_token = has_cls_token
        self.conv_proj_q = _depthwise_bn(dim, stride=1)
        self.conv_proj_k = _depthwise_bn(dim, stride=kv_stride)
        self.conv_proj_v = _depthwise_bn(dim, stride=kv_stride)
        self.proj_q = nn.Linear(dim, dim)
        self.proj_k = nn.Linear(dim, dim)
        self.proj_v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        return x.view(batch, tokens, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        batch, tokens, dim = x.shape
        if self.has_cls_token:
            cls_token, x = x[:, :1], x[:, 1:]
        token_map = x.transpose(1, 2).reshape(batch, dim, *grid)
        q, k, v = (proj(token_map).flatten(2).transpose(1, 2)
                   for proj in (self.conv_proj_q, self.conv_proj_k, self.conv_proj_v))
        if self.has_cls_token:
            q, k, v = (torch.cat((cls_token, t), dim=1) for t in (q, k, v))
        q, k, v = self._heads(self.proj_q(q)), self._heads(self.proj_k(k)), self._heads(self.proj_v(v))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class CvTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, has_cls_token: bool, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = ConvAttention(dim, num_heads, has_cls_token)
        self.drop_path = drop_path_or_identity(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=QuickGELU)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), grid))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConvEmbed(nn.Module):
    """Overlapping conv patch embedding + LayerNorm over channels; returns a token map (B, C, H, W)."""

    def __init__(self, in_chans: int, embed_dim: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class CvTStage(nn.Module):
    """Conv embedding then blocks; returns (token map, class token or None)."""

    def __init__(self, in_chans: int, embed_dim: int, patch: tuple[int, int, int], depth: int, num_heads: int,
                 mlp_ratio: float, has_cls_token: bool, drop_path_rate: float):
        super().__init__()
        self.patch_embed = ConvEmbed(in_chans, embed_dim, *patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if has_cls_token else None
        self.blocks = nn.ModuleList(
            CvTBlock(embed_dim, num_heads, mlp_ratio, has_cls_token, rate)
            for rate in calculate_drop_path_rates(drop_path_rate, depth))
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_linear_and_norms)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.patch_embed(x)
        batch, dim, height, width = x.shape
        x = x.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        for block in self.blocks:
            x = block(x, (height, width))
        cls_token = None
        if self.cls_token is not None:
            cls_token, x = x[:, :1], x[:, 1:]
        return x.transpose(1, 2).reshape(batch, dim, height, width), cls_token


def _init_linear_and_norms(module: nn.Module) -> None:
    """Linear: trunc-normal(0.02), zero bias; LayerNorm and BatchNorm: ones/zeros."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class CvT(nn.Module):
    """Three CvT stages; the class token exists in the last stage only, and its normed state is the feature.

    Unlike the reference (which squeezes the class token and so breaks at batch size 1), any batch size works.
    BatchNorm in train mode needs more than one value per channel, so a batch of one needs a final-stage
    key/value grid larger than 1x1 (image size >= 64).
    """

    def __init__(self, img_size: int, num_classes: int, embed_dims: tuple[int, ...] = (64, 192, 384),
                 depths: tuple[int, ...] = (1, 2, 10), num_heads: tuple[int, ...] = (1, 3, 6),
                 patches: tuple[tuple[int, int, int], ...] = ((7, 4, 2), (3, 2, 1), (3, 2, 1)),
                 mlp_ratio: float = 4.0, drop_path_rates: tuple[float, ...] = (0.0, 0.0, 0.1)):
        super().__init__()
        if img_size < 16:
            raise ValueError(f"image size {img_size} is too small for CvT (needs at least 16)")
        self.num_stages = len(depths)
        in_chans = 3
        for i in range(self.num_stages):
            setattr(self, f"stage{i}", CvTStage(in_chans, embed_dims[i], patches[i], depths[i], num_heads[i],
                                                mlp_ratio, i == self.num_stages - 1, drop_path_rates[i]))
            in_chans = embed_dims[i]
        self.norm = nn.LayerNorm(embed_dims[-1], eps=LN_EPS)
        self.head = nn.Linear(embed_dims[-1], num_classes)
        trunc_normal_(self.head.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls_token = None
        for i in range(self.num_stages):
            x, cls_token = getattr(self, f"stage{i}")(x)
        return self.head(self.norm(cls_token)[:, 0])


@register_model
@with_global_drop_path
def cvt_13(num_classes: int = 100, img_size: int = 224, drop_path_rate: float = 0.1,
           depth: tuple[int, int, int] = (1, 2, 10)) -> CvT:
    """CvT-13: dims 64/192/384, heads 1/3/6, conv embeds k7s4p2/k3s2p1/k3s2p1, drop path only in stage 3."""
    return CvT(img_size, num_classes, depths=depth, drop_path_rates=(0.0, 0.0, drop_path_rate))
