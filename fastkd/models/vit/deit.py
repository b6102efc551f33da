"""DeiT-Ti from timm's ViT, with the reference's initialisation and its two-head train/eval contract."""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from ..registry import register_model
from .layers import with_global_drop_path


def _reference_init(model: VisionTransformer) -> None:
    """The reference zero-initialises every head and draws the class token from trunc-normal(0.02).

    timm draws the class token from N(0, 1e-6) and the head from trunc-normal; the distillation token is
    trunc-normal(0.02) in both.
    """
    trunc_normal_(model.cls_token, std=0.02)
    heads = [model.head] + ([model.head_dist] if isinstance(model, VisionTransformerDistilled) else [])
    for head in heads:
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)


class DistilledDeiT(VisionTransformerDistilled):
    """DeiT with a distillation token, as the reference's KD student (`ENABLE_LOGIT`).

    Train mode returns the class-head logits and keeps the distillation-head logits in `distill_logits` (the
    reference's KD student logits); eval mode returns the mean of both heads. `forward_heads` returns both heads
    without touching module state.
    """

    distill_logits: torch.Tensor | None = None

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class-head logits, distillation-head logits) of one forward."""
        tokens = self.forward_features(x)
        return self.head(self.head_drop(tokens[:, 0])), self.head_dist(self.head_drop(tokens[:, 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, self.distill_logits = self.forward_heads(x)
        return logits if self.training else (logits + self.distill_logits) / 2


def _deit_kwargs(num_classes: int, img_size: int, drop_path_rate: float, depth: int, embed_dim: int,
                 num_heads: int) -> dict:
    return dict(img_size=img_size, patch_size=16, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                mlp_ratio=4.0, qkv_bias=True, num_classes=num_classes, drop_path_rate=drop_path_rate)


@register_model
@with_global_drop_path
def deit_tiny(num_classes: int = 100, img_size: int = 224, distilled: bool = False, drop_path_rate: float = 0.1,
              depth: int = 12, embed_dim: int = 192, num_heads: int = 3) -> VisionTransformer:
    """DeiT-Ti (timm `deit_tiny_patch16_224` / `deit_tiny_distilled_patch16_224`); `distilled` adds the
    distillation token and head the reference adds for logit KD. `depth`/`embed_dim`/`num_heads` shrink it."""
    kwargs = _deit_kwargs(num_classes, img_size, drop_path_rate, depth, embed_dim, num_heads)
    model = DistilledDeiT(**kwargs) if distilled else VisionTransformer(**kwargs)
    _reference_init(model)
    return model
