"""PiT-Ti from timm, with the reference's stochastic-depth rule."""

from __future__ import annotations

from timm.models.pit import PoolingVisionTransformer

from ..registry import register_model
from .layers import drop_path_or_identity, with_global_drop_path


def reference_pit_drop_path_rates(max_rate: float, depths: list[int]) -> list[float]:
    """The reference's rule: block i of n drops with max_rate * i / n (so never reaches max_rate; timm does)."""
    total = sum(depths)
    return [max_rate * i / total for i in range(total)]


@register_model
@with_global_drop_path
def pit_ti(num_classes: int = 100, img_size: int = 224, drop_path_rate: float = 0.1,
           depth: tuple[int, int, int] = (2, 6, 4)) -> PoolingVisionTransformer:
    """PiT-Ti (timm `pit_ti_224`: patch 16, stride 8, dims 64/128/256, heads 2/4/8); `depth` per stage."""
    model = PoolingVisionTransformer(img_size=img_size, patch_size=16, stride=8, base_dims=[32, 32, 32],
                                     depth=list(depth), heads=[2, 4, 8], mlp_ratio=4, num_classes=num_classes)
    blocks = [block for stage in model.transformers for block in stage.blocks]
    for block, rate in zip(blocks, reference_pit_drop_path_rates(drop_path_rate, list(depth)), strict=True):
        block.drop_path1 = drop_path_or_identity(rate)
        block.drop_path2 = drop_path_or_identity(rate)
    return model
