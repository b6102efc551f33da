"""ConViT-Ti from timm (the reference's ConViT matches it)."""

from __future__ import annotations

from timm.models.convit import ConVit

from ..registry import register_model
from .layers import with_global_drop_path


@register_model
@with_global_drop_path
def convit_tiny(num_classes: int = 100, img_size: int = 224, drop_path_rate: float = 0.1, depth: int = 12,
                local_layers: int = 10) -> ConVit:
    """ConViT-Ti (timm `convit_tiny`: dim 192, 4 heads, no qkv bias); the first `local_layers` blocks are GPSA."""
    return ConVit(img_size=img_size, patch_size=16, embed_dim=48, num_heads=4, depth=depth, mlp_ratio=4.0,
                  qkv_bias=False, local_up_to_layer=local_layers, locality_strength=1.0,
                  num_classes=num_classes, drop_path_rate=drop_path_rate)
