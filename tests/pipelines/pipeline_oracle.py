"""Oracle for the pipeline tests: the recipes applied one sample at a time with torchvision.transforms.v2.functional
(and PIL for the ViT recipe's RandomResizedCrop, as timm runs it), from the same host-drawn parameters the pipelines
use."""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode

from fastkd.pipelines.params import BatchParams, draw_params, sample_seed
from fastkd.pipelines.policies import IDENTITY, OPS, RANDAUGMENT_OPS
from fastkd.pipelines.recipes import Recipe

CIFAR100_MEAN = (0.507, 0.487, 0.441)
CIFAR100_STD = (0.267, 0.256, 0.276)
FILL = 128


def make_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, size, size, 3): smooth colour blobs plus noise, so every op has structure to act on."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, size=(n, 3, 4, 4))).float()
    smooth = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    noise = torch.from_numpy(rng.normal(0, 12, size=(n, 3, size, size))).float()
    return (smooth + noise).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def autoaugment_op(image: torch.Tensor, op: str, value: float) -> torch.Tensor:
    """One AutoAugment op on a CHW uint8 image in torchvision terms (see pipelines/policies.py for the values)."""
    nearest, bilinear = InterpolationMode.NEAREST, InterpolationMode.BILINEAR
    if op == "invert":
        return TF.invert(image)
    if op == "contrast":
        return TF.adjust_contrast(image, value)
    if op == "rotate":
        return TF.rotate(image, value, nearest, fill=FILL)
    if op == "translate_x":
        return TF.affine(image, 0.0, [value, 0.0], 1.0, [0.0, 0.0], nearest, fill=FILL)
    if op == "translate_y":
        return TF.affine(image, 0.0, [0.0, value], 1.0, [0.0, 0.0], nearest, fill=FILL)
    if op == "sharpness":
        return TF.adjust_sharpness(image, value)
    if op == "shear_x":
        return TF.affine(image, 0.0, [0.0, 0.0], 1.0, [value, 0.0], bilinear, fill=FILL, center=[0, 0])
    if op == "shear_y":
        return TF.affine(image, 0.0, [0.0, 0.0], 1.0, [0.0, value], bilinear, fill=FILL, center=[0, 0])
    if op == "autocontrast":
        return TF.autocontrast(image)
    if op == "equalize":
        return TF.equalize(image)
    if op == "posterize":
        return TF.posterize(image, int(value))
    if op == "color":
        return TF.adjust_saturation(image, value)
    if op == "brightness":
        return TF.adjust_brightness(image, value)
    if op == "solarize":
        return TF.solarize(image, value)
    raise ValueError(op)


def randaugment_op(image: torch.Tensor, op: str, value: float, fill: list[float]) -> torch.Tensor:
    """One timm RandAugment op in torchvision terms, geometric ops bilinear with the mean-colour fill."""
    bilinear = InterpolationMode.BILINEAR
    if op == "rotate":
        return TF.rotate(image, value, bilinear, fill=fill)
    if op == "translate_x":
        return TF.affine(image, 0.0, [value, 0.0], 1.0, [0.0, 0.0], bilinear, fill=fill)
    if op == "translate_y":
        return TF.affine(image, 0.0, [0.0, value], 1.0, [0.0, 0.0], bilinear, fill=fill)
    if op == "shear_x":
        return TF.affine(image, 0.0, [0.0, 0.0], 1.0, [value, 0.0], bilinear, fill=fill, center=[0, 0])
    if op == "shear_y":
        return TF.affine(image, 0.0, [0.0, 0.0], 1.0, [0.0, value], bilinear, fill=fill, center=[0, 0])
    if op == "solarize" and value > 255:
        return image  # timm's threshold 256 (magnitude 0) leaves every pixel; torchvision rejects it
    if op == "solarize_add":  # no torchvision op: PIL's lookup table of timm
        return torch.where(image < 128, (image.int() + int(value)).clamp(max=255).to(torch.uint8), image)
    return autoaugment_op(image, op, value)


def augment_sample(image: torch.Tensor, recipe: Recipe, params: BatchParams, i: int, mean=None) -> torch.Tensor:
    """Sample ``i`` of a batch: CHW uint8 in, CHW uint8 out (before normalisation)."""
    _, height, width = image.shape
    if params.resized_crops is not None:  # timm on PIL images: crop, then PIL's bicubic resize
        top, left, box_h, box_w = params.resized_crops[i].tolist()
        size = recipe.resized_crop_size
        crop = Image.fromarray(image.permute(1, 2, 0).numpy()).crop((left, top, left + box_w, top + box_h))
        image = torch.from_numpy(np.array(crop.resize((size, size), Image.BICUBIC))).permute(2, 0, 1)
    if recipe.resize:
        image = TF.resize(image, [recipe.resize] * 2, InterpolationMode.BILINEAR, antialias=True)
    if params.crop_offsets is not None:
        padded = TF.pad(image, [recipe.crop_padding], fill=recipe.crop_fill)
        top, left = params.crop_offsets[i].tolist()
        image = TF.crop(padded, top, left, height, width)
    if params.flips is not None and params.flips[i]:
        image = TF.horizontal_flip(image)
    if params.angles is not None:
        image = TF.rotate(image, float(params.angles[i]), InterpolationMode.NEAREST, fill=0)
    if params.autoaugment is not None:
        for stage in range(2):
            op_id = int(params.autoaugment.op_ids[i, stage])
            if op_id != IDENTITY:
                image = autoaugment_op(image, OPS[op_id], float(params.autoaugment.values[i, stage]))
    if params.cutout_centres is not None:
        row, col = params.cutout_centres[i].tolist()
        half = recipe.cutout_length // 2
        top, left = max(row - half, 0), max(col - half, 0)
        bottom, right = min(row + half, height), min(col + half, width)
        image = TF.erase(image, top, left, bottom - top, right - left, torch.tensor(0, dtype=torch.uint8))
    if params.randaugment is not None:
        fill = [float(min(255, round(255 * m))) for m in mean]
        for layer in range(params.randaugment.op_ids.shape[1]):
            op_id = int(params.randaugment.op_ids[i, layer])
            if op_id != IDENTITY:
                image = randaugment_op(image, RANDAUGMENT_OPS[op_id], float(params.randaugment.values[i, layer]), fill)
    return image


def reference_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: Recipe,
    indices: torch.Tensor,
    seed: int,
    mean: tuple[float, float, float] = CIFAR100_MEAN,
    std: tuple[float, float, float] = CIFAR100_STD,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(normalized float32 NCHW, uint8 NCHW before normalisation, labels) for the batch, sample by sample."""
    _, height, width, _ = images.shape
    params = draw_params(recipe, len(indices), height, width, seed)
    raw = torch.stack([
        augment_sample(images[idx].permute(2, 0, 1), recipe, params, i, mean) for i, idx in enumerate(indices.tolist())
    ])
    normalized = TF.normalize(TF.to_dtype(raw, torch.float32, scale=True), list(mean), list(std))
    if params.erasing_boxes is not None:  # timm: per-pixel standard-normal noise; fastkd keys it by sample
        for i, (top, left, box_h, box_w) in enumerate(params.erasing_boxes.tolist()):
            if box_h:
                generator = torch.Generator().manual_seed(sample_seed(seed, i))
                normalized[i, :, top:top + box_h, left:left + box_w] = torch.randn(3, box_h, box_w, generator=generator)
    return normalized, raw, labels[indices]


def unnormalize(images: torch.Tensor, mean=CIFAR100_MEAN, std=CIFAR100_STD) -> torch.Tensor:
    """Back to grey levels 0..255 (float) to compare pipelines in pixel units."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (images.float() * s + m) * 255.0
