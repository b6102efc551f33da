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
    """Apply each sample's sub-policy to uint8 NCHW ``images`` in place and return them.

    Per stage, the samples sharing an op are gathered and transformed together; the grouping is known on the host
    (the parameters are host tensors), so no device sync is needed.
    """
    for stage in range(2):
        stage_ops = params.op_ids[:, stage]
        for op_id in torch.unique(stage_ops).tolist():
            if op_id == IDENTITY:
                continue
            members = torch.nonzero(stage_ops == op_id).squeeze(1)
            on_device = members.to(images.device, non_blocking=True)
            images[on_device] = _AUTOAUGMENT_OPS[OPS[op_id]](images[on_device], params.values[members, stage])
    return images


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
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(std, dtype=torch.float32, device=device)

    def __call__(self, indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized (B, 3, h, w) images in ``dtype`` and int64 labels; a pure function of (indices, seed)."""
        recipe = self.recipe
        indices = indices.to(self.device, torch.int64, non_blocking=True)
        batch = self.images[indices]
        _, height, width, _ = batch.shape
        params = draw_params(recipe, len(indices), height, width, seed)
        if params.crop_offsets is not None or params.flips is not None:
            batch = ops.crop_flip(batch, params.crop_offsets, params.flips, recipe.crop_padding, recipe.crop_fill)
        images = batch.permute(0, 3, 1, 2)  # NCHW view of NHWC memory, i.e. channels_last
        if params.angles is not None:
            images = ops.rotate(images, params.angles)
        if params.autoaugment is not None:
            images = apply_autoaugment(images, params.autoaugment)
        if params.cutout_centres is not None:
            images = ops.cutout(images, params.cutout_centres, recipe.cutout_length)
        normalized = ops.normalize(images, self.mean, self.std, self.dtype, self.channels_last)
        return normalized, self.labels[indices]
