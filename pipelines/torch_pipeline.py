"""Device-resident torch pipeline: the whole uint8 split lives on the training device (airbench style) and every
batch is augmented there in a few batched per-sample ops.

Replay determinism: the batch's random parameters come from ``params.draw_params(recipe, B, H, W, seed)`` on the
host; the ops below are deterministic functions of (pixels, parameters), so (indices, seed) fixes the output.
"""

from __future__ import annotations

from typing import Callable

import torch

import torchvision.transforms.v2.functional as TF

from . import torch_ops as ops
from .params import BatchParams, draw_params, slice_params
from .policies import IDENTITY, OPS, RANDAUGMENT_OPS
from .recipes import Recipe

AUTOAUGMENT_FILL = 128.0
"""Grey fill of the reference's AutoAugment geometric ops (docs/semantics.md §2.4)."""

OpTable = dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
"""Batched op per name: (uint8 NCHW images, per-sample float64 parameters) -> images."""

_AUTOAUGMENT_OPS: OpTable = {
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


def randaugment_ops(fill: tuple[float, float, float]) -> OpTable:
    """timm's RandAugment ops; geometric ones fill with the mean colour and sample bilinearly (timm uses PIL
    bicubic, which torchvision's tensor warps do not offer)."""
    return {
        **{name: _AUTOAUGMENT_OPS[name] for name in ("autocontrast", "equalize", "invert", "posterize", "solarize",
                                                      "color", "contrast", "brightness", "sharpness")},
        "solarize_add": ops.solarize_add,
        "rotate": lambda x, v: ops.rotate(x, v, fill, "bilinear"),
        "shear_x": lambda x, v: ops.shear(x, v, 0, fill),
        "shear_y": lambda x, v: ops.shear(x, v, 1, fill),
        "translate_x": lambda x, v: ops.translate(x, v, 0, fill, "bilinear"),
        "translate_y": lambda x, v: ops.translate(x, v, 1, fill, "bilinear"),
    }


def apply_op_layers(
    images: torch.Tensor, op_ids: torch.Tensor, values: torch.Tensor, names: tuple[str, ...], table: OpTable
) -> torch.Tensor:
    """Apply per-sample op sequences to uint8 NCHW ``images``; returns a new channels_last batch.

    ``op_ids`` and ``values`` are host tensors (B, layers) indexing ``names`` (``IDENTITY`` = skip). Per layer the
    batch is reordered so that samples sharing an op are one contiguous slice, each op runs once on its slice, and
    a final gather restores the order; the grouping is known on the host, so there is no device sync.
    """
    images = images.contiguous()  # NCHW rows: the gathers below are row copies, the ops' reductions run fastest
    order = torch.arange(len(images))  # order[i] = original position of the sample now at row i
    for layer in range(op_ids.shape[1]):
        layer_ops = op_ids[order, layer]
        regroup = torch.argsort(layer_ops, stable=True)
        order = order[regroup]
        images = images.index_select(0, ops.to_device(regroup, images.device))
        groups, counts = torch.unique_consecutive(layer_ops[regroup], return_counts=True)
        layer_values = values[order, layer]
        start = 0
        for op_id, count in zip(groups.tolist(), counts.tolist()):
            if op_id != IDENTITY:
                stop = start + count
                images[start:stop] = table[names[op_id]](images[start:stop], layer_values[start:stop])
            start += count
    restore = ops.to_device(torch.argsort(order), images.device)
    return images.index_select(0, restore).contiguous(memory_format=torch.channels_last)


class PixelStages:
    """Everything after the geometry: AutoAugment / RandAugment, Cutout, normalisation and random erasing, on a
    uint8 NHWC batch on the device. The torch pipeline runs it after its own geometry, the DALI pipeline after
    DALI's (for the ViT recipes, whose RandAugment DALI cannot take from host-drawn parameters)."""

    def __init__(self, recipe: Recipe, out_shape: tuple[int, int], *, mean: tuple[float, float, float],
                 std: tuple[float, float, float], device: torch.device, dtype: torch.dtype,
                 channels_last: bool) -> None:
        self.recipe = recipe
        self.dtype = dtype
        self.channels_last = channels_last
        # float64 output (exact oracle runs) is normalised in float64; everything else in float32.
        stats_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        self.mean = torch.tensor(mean, dtype=stats_dtype, device=device).expand(*out_shape, 3).contiguous()
        self.std = torch.tensor(std, dtype=stats_dtype, device=device).expand(*out_shape, 3).contiguous()
        # timm fills RandAugment's geometric ops with the mean colour of the normalisation statistics
        self.randaugment_ops = randaugment_ops(tuple(float(min(255, round(255 * m))) for m in mean))

    def __call__(self, batch: torch.Tensor, params: BatchParams, seed: int, erasing_boxes: torch.Tensor | None,
                 first_row: int = 0) -> torch.Tensor:
        """Normalized (B, 3, h, w) images in ``dtype`` from the uint8 NHWC ``batch``; ``erasing_boxes`` are the
        whole batch's, ``first_row`` the batch row of ``batch[0]``."""
        if params.autoaugment is not None:
            images = batch.permute(0, 3, 1, 2)
            aa = params.autoaugment
            batch = apply_op_layers(images, aa.op_ids, aa.values, OPS, _AUTOAUGMENT_OPS).permute(0, 2, 3, 1)
        if params.randaugment is not None:
            images = batch.permute(0, 3, 1, 2)
            ra = params.randaugment
            batch = apply_op_layers(images, ra.op_ids, ra.values, RANDAUGMENT_OPS, self.randaugment_ops)
            batch = batch.permute(0, 2, 3, 1)
        if params.cutout_centres is not None:
            ops.cutout_(batch, params.cutout_centres, self.recipe.cutout_length)
        normalized = ops.normalize(batch, self.mean, self.std).permute(0, 3, 1, 2)
        if erasing_boxes is not None:
            ops.erase_with_noise_(normalized, erasing_boxes, seed, first_row)
        normalized = normalized.to(self.dtype)
        return normalized if self.channels_last else normalized.contiguous()


class TorchPipeline:
    """``pipeline(indices, seed) -> (images, labels)`` on ``device``, with the data held there as uint8 NHWC."""

    backend = "torch"
    takes_rows = True

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
        self.recipe = recipe
        self.device = device
        self.dtype = dtype
        self.channels_last = channels_last
        _, height, width, _ = images.shape
        self.image_shape = (height, width)
        self.pixels = ops.with_fill_pixels(images, (recipe.crop_fill, 0), device)
        self.images = self.pixels[: -2].view(images.shape)
        self.labels = labels.to(device)
        self.stages = PixelStages(recipe, recipe.output_size(height, width), mean=mean, std=std, device=device,
                                  dtype=dtype, channels_last=channels_last)

    def _geometry(self, indices: torch.Tensor, params: BatchParams) -> torch.Tensor:
        """The batch after its crop / flip / rotation / resize, as contiguous uint8 NHWC."""
        recipe = self.recipe
        if params.resized_crops is not None:
            images = ops.resized_crops(self.images, indices, params.resized_crops, recipe.resized_crop_size,
                                       params.flips)
            return images.permute(0, 2, 3, 1).contiguous()
        if recipe.resize:
            images = self.images.index_select(0, indices).permute(0, 3, 1, 2)
            resized = TF.resize(images, [recipe.resize, recipe.resize], TF.InterpolationMode.BILINEAR, antialias=True)
            return resized.permute(0, 2, 3, 1).contiguous()
        if params.crop_offsets is None and params.flips is None and params.angles is None:
            return self.images.index_select(0, indices)
        return ops.crop_flip_rotate(
            self.pixels, self.image_shape, indices, params.crop_offsets, params.flips, params.angles,
            recipe.crop_padding,
        )

    def __call__(self, indices: torch.Tensor, seed: int,
                 rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized (B, 3, h, w) images in ``dtype`` and int64 labels; a pure function of (indices, seed).
        ``rows``: only these rows of that batch (a data-parallel rank's block), bit-identical to slicing the whole
        batch's output: the parameters are drawn for the whole batch and sliced."""
        recipe = self.recipe
        indices = ops.to_device(indices.to(torch.int64), self.device)
        params = draw_params(recipe, len(indices), *self.image_shape, seed)
        all_erasing_boxes = params.erasing_boxes
        if rows is not None:
            params, indices = slice_params(params, rows), indices[rows]
        batch = self._geometry(indices, params)
        normalized = self.stages(batch, params, seed, all_erasing_boxes, 0 if rows is None else rows.start)
        return normalized, self.labels[indices]
