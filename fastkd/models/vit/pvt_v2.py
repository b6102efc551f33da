"""PVTv2-b0 from timm, with the reference's LayerNorm epsilon everywhere."""

from __future__ import annotations

import torch.nn as nn
from timm.models.pvt_v2 import PyramidVisionTransformerV2

from ..registry import register_model
from .layers import with_global_drop_path

REFERENCE_LN_EPS = 1e-6


@register_model
@with_global_drop_path
def pvt_v2_b0(num_classes: int = 100, img_size: int = 224, drop_path_rate: float = 0.1,
              depth: tuple[int, int, int, int] = (2, 2, 2, 2)) -> PyramidVisionTransformerV2:
    """PVTv2-b0 (timm `pvt_v2_b0`). Fully convolutional tokeniser, so `img_size` only needs to be a multiple of 32.

    timm builds the patch-embed, spatial-reduction and downsample norms with eps 1e-5; the reference uses its
    global 1e-6 for every LayerNorm.
    """
    if img_size % 32:
        raise ValueError(f"pvt_v2_b0 needs an image size divisible by 32, got {img_size}")
    model = PyramidVisionTransformerV2(depths=depth, embed_dims=(32, 64, 160, 256), num_heads=(1, 2, 5, 8),
                                       sr_ratios=(8, 4, 2, 1), mlp_ratios=(8, 8, 4, 4), qkv_bias=True,
                                       num_classes=num_classes, drop_path_rate=drop_path_rate)
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = REFERENCE_LN_EPS
    return model
