"""Device-resident torch pipeline: the whole uint8 split lives on the training device (airbench style) and every
batch is augmented there in a few batched per-sample ops.

Replay determinism: the batch's random parameters come from ``params.draw_params(recipe, B, H, W, seed)`` on the
host; the ops below are deterministic functions of (pixels, parameters), so (indices, seed) fixes the output.
"""

from __future__ import annotations

from typing import Callable

import torch

from . import torch_ops as ops
from .params import AutoAugmentParams, draw_params
from .policies import IDENTITY, OPS
from .recipes import Recipe

AUTOAUGMENT_FILL = 128.0
"""Grey fill of the reference's AutoAugment geometric ops (spec 1.5)."""

_AUTOAUGMENT_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "invert": lambda x, v: ops.invert(x),
    "contrast": ops.adjust_contrast,
    "rotate": lambda x, v: ops.rotate(x, v, AUTOAUGMENT_FILL),
    "translate_x": lambda x, v: ops.translate(x, v, 0, AUTOAUGMENT_FILL),
    "translate_y": lambda x, v: ops.translate(x, v, 1, AUTOAUGMENT_FILL),
    "sharpness": ops.adjust_sharpness,
    "shear_x": lambda x, v: ops.shear(x, v, 0, AUTOAUGMENT_FILL),
    "shear_y": lambda x, v: ops.shear(x, v, 1, AUTOAUGMENT_FILL),
    "autocontrast": lambda x, v: ops.autocontrast(x),
    "equalize": lambda x, v: ops.equalize(x),
    "posterize": ops.posterize,
    "color": ops.adjust_saturation,
    "brightness": ops.adjust_brightness,
    "solarize": ops.solarize,
}


def apply_autoaugment(images: torch.Tensor, params: AutoAugmentParams) -> torch.Tensor:
    """Each sample's sub-policy applied to uint8 NCHW ``images``; returns a new channels_last batch.

    Per stage the batch is reordered so that samples sharing an op are one contiguous slice, each op runs once
    on its slice, and a final gather restores the order. The grouping comes from host tensors: no device sync.
    """
    images = images.contiguous()  # NCHW rows: the gathers below are row copies, the ops' reductions run fastest
    order = torch.arange(len(images))  # order[i] = original position of the sample now at row i
    for stage in range(2):
        stage_ops = params.op_ids[order, stage]
        regroup = torch.argsort(stage_ops, stable=True)
        order = order[regroup]
        images = images.index_select(0, regroup.to(images.device, non_blocking=True))
        op_ids, counts = torch.unique_consecutive(stage_ops[regroup], return_counts=True)
        values = params.values[order, stage]
        start = 0
        for op_id, count in zip(op_ids.tolist(), counts.tolist()):
            if op_id != IDENTITY:
                stop = start + count
                images[start:stop] = _AUTOAUGMENT_OPS[OPS[op_id]](images[start:stop], values[start:stop])
            start += count
    restore = torch.argsort(order).to(images.device, non_blocking=True)
    return images.index_select(0, restore).contiguous(memory_format=torch.channels_last)


class TorchPipeline:
    """``pipeline(indices, seed) -> (images, labels)`` on ``device``, with the data held there as uint8 NHWC."""

    backend = "torch"

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        recipe: Recipe,
        *,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        device: torch.device,
        dtype: torch.dtype,
        channels_last: bool,
    ) -> None:
        if recipe.resized_crop_size or recipe.randaugment or recipe.random_erasing_prob or recipe.resize:
            raise NotImplementedError(f"recipe {recipe.name!r} is not available on the torch backend")
        self.recipe = recipe
        self.device = device
        self.dtype = dtype
        self.channels_last = channels_last
        _, height, width, _ = images.shape
        self.image_shape = (height, width)
        self.pixels = ops.with_fill_pixels(images.to(device), (recipe.crop_fill, 0))
        self.images = self.pixels[: -2].view(images.shape)
        self.labels = labels.to(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).expand(height, width, 3).contiguous()
        self.std = torch.tensor(std, dtype=torch.float32, device=device).expand(height, width, 3).contiguous()

    def __call__(self, indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized (B, 3, h, w) images in ``dtype`` and int64 labels; a pure function of (indices, seed)."""
        recipe = self.recipe
        indices = indices.to(self.device, torch.int64, non_blocking=True)
        params = draw_params(recipe, len(indices), *self.image_shape, seed)
        if params.crop_offsets is None and params.flips is None and params.angles is None:
            batch = self.images.index_select(0, indices)
        else:
            batch = ops.crop_flip_rotate(
                self.pixels, self.image_shape, indices, params.crop_offsets, params.flips, params.angles,
                recipe.crop_padding,
            )
        if params.autoaugment is not None:
            batch = apply_autoaugment(batch.permute(0, 3, 1, 2), params.autoaugment).permute(0, 2, 3, 1)
        if params.cutout_centres is not None:
            ops.cutout_(batch, params.cutout_centres, recipe.cutout_length)
        normalized = ops.normalize(batch, self.mean, self.std).to(self.dtype).permute(0, 3, 1, 2)
        if not self.channels_last:
            normalized = normalized.contiguous()
        return normalized, self.labels[indices]
