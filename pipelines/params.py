"""Host-side draws of every random parameter of a batch: the replay-determinism core shared by all backends.

A batch's parameters come from a CPU ``torch.Generator`` seeded with the batch seed, in a fixed order, so they
depend only on (batch size, seed, recipe, image size) and never on the device or backend that applies them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields

import torch

import math

from .policies import (
    CIFAR10_POLICY,
    IDENTITY,
    OP_ID,
    RANDAUGMENT_OPS,
    parse_randaugment,
    randaugment_parameters,
    signed_parameter,
)
from .recipes import Recipe


@dataclass(frozen=True)
class AutoAugmentParams:
    """Resolved AutoAugment choices: per stage (first op, second op) the op id and its parameter."""

    subpolicy: torch.Tensor
    """int64 (B,): index into ``CIFAR10_POLICY``."""
    op_ids: torch.Tensor
    """int64 (B, 2): op id per stage (``policies.OPS``), ``IDENTITY`` where the apply-bit came up false."""
    values: torch.Tensor
    """float64 (B, 2): the op parameter (``policies.signed_parameter``)."""


@dataclass(frozen=True)
class RandAugmentParams:
    """Resolved RandAugment choices per layer: op id (``policies.RANDAUGMENT_OPS``, ``IDENTITY`` when skipped) and
    its parameter (``policies.randaugment_parameters``), both (B, layers)."""

    op_ids: torch.Tensor
    values: torch.Tensor


@dataclass(frozen=True)
class BatchParams:
    """Every random choice of one batch; a field is None when the recipe does not use it."""

    crop_offsets: torch.Tensor | None = None
    """int64 (B, 2): (top, left) of the window in the padded image, uniform integers in 0..2*padding."""
    flips: torch.Tensor | None = None
    """bool (B,): flip horizontally."""
    angles: torch.Tensor | None = None
    """float64 (B,): rotation in degrees, counter-clockwise."""
    autoaugment: AutoAugmentParams | None = None
    cutout_centres: torch.Tensor | None = None
    """int64 (B, 2): (row, column) of each Cutout hole's centre, uniform over the image."""
    resized_crops: torch.Tensor | None = None
    """int64 (B, 4): RandomResizedCrop boxes (top, left, height, width), torchvision's ``get_params``."""
    randaugment: RandAugmentParams | None = None
    erasing_boxes: torch.Tensor | None = None
    """int64 (B, 4): RandomErasing boxes (top, left, height, width) on the output; height 0 = not erased."""


def _draw_autoaugment(batch: int, height: int, width: int, generator: torch.Generator) -> AutoAugmentParams:
    subpolicy = torch.randint(len(CIFAR10_POLICY), (batch,), generator=generator)
    apply_draws = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
    signs = torch.randint(2, (batch, 2), generator=generator) * 2 - 1
    # Resolving the 25 x 2 x 2 possible (op, sign) parameters once keeps the per-sample work a table lookup.
    op_table = torch.tensor([[OP_ID[p[1]], OP_ID[p[4]]] for p in CIFAR10_POLICY])
    prob_table = torch.tensor([[p[0], p[3]] for p in CIFAR10_POLICY], dtype=torch.float64)
    value_table = torch.tensor(
        [
            [
                [signed_parameter(op, index, sign, height, width) for sign in (-1, 1)]
                for op, index in ((p[1], p[2]), (p[4], p[5]))
            ]
            for p in CIFAR10_POLICY
        ],
        dtype=torch.float64,
    )  # (25, stage, sign)
    stage = torch.arange(2)
    applied = apply_draws < prob_table[subpolicy]
    op_ids = torch.where(applied, op_table[subpolicy], IDENTITY)
    values = value_table[subpolicy[:, None], stage, (signs + 1) // 2]
    return AutoAugmentParams(subpolicy=subpolicy, op_ids=op_ids, values=values)


def _first_fitting_boxes(
    heights: torch.Tensor, widths: torch.Tensor, fits: torch.Tensor, positions: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Of up to 10 attempts per sample (columns), the first that fits, placed at uniform integer offsets
    ``floor(u * (room + 1))``; returns (boxes (B, 4), whether any attempt fitted (B,))."""
    first = torch.where(fits.any(1), fits.long().argmax(1), 0)
    rows = torch.arange(len(fits))
    box_h, box_w = heights[rows, first], widths[rows, first]
    top = torch.floor(positions[:, 0] * (height - box_h + 1)).long()
    left = torch.floor(positions[:, 1] * (width - box_w + 1)).long()
    return torch.stack([top, left, box_h, box_w], dim=1), fits.any(1)


def draw_resized_crops(recipe: Recipe, batch: int, height: int, width: int, generator) -> torch.Tensor:
    """torchvision ``RandomResizedCrop.get_params``: 10 attempts of (area, log-uniform ratio), else a centre crop."""
    (low, high), (ratio_low, ratio_high) = recipe.resized_crop_scale, recipe.resized_crop_ratio
    areas = height * width * (low + (high - low) * torch.rand(batch, 10, generator=generator, dtype=torch.float64))
    log_low, log_high = math.log(ratio_low), math.log(ratio_high)
    ratios = torch.exp(log_low + (log_high - log_low) * torch.rand(batch, 10, generator=generator, dtype=torch.float64))
    positions = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
    widths = torch.round(torch.sqrt(areas * ratios)).long()
    heights = torch.round(torch.sqrt(areas / ratios)).long()
    fits = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    boxes, found = _first_fitting_boxes(heights, widths, fits, positions, height, width)
    in_ratio = width / height
    if in_ratio < ratio_low:
        centre_w, centre_h = width, int(round(width / ratio_low))
    elif in_ratio > ratio_high:
        centre_w, centre_h = int(round(height * ratio_high)), height
    else:
        centre_w, centre_h = width, height
    centre = torch.tensor([(height - centre_h) // 2, (width - centre_w) // 2, centre_h, centre_w])
    return torch.where(found[:, None], boxes, centre)


def _draw_randaugment(recipe: Recipe, batch: int, height: int, width: int, generator) -> RandAugmentParams:
    """timm RandAugment: ``num_layers`` ops drawn with replacement, each applied with ``prob`` at a magnitude
    ~ N(m, mstd) clipped to 0..10, with a random sign."""
    config = parse_randaugment(recipe.randaugment)
    layers = int(config["num_layers"])
    op_ids = torch.randint(len(RANDAUGMENT_OPS), (batch, layers), generator=generator)
    applied = torch.rand(batch, layers, generator=generator, dtype=torch.float64) < config["prob"]
    noise = torch.randn(batch, layers, generator=generator, dtype=torch.float64)
    magnitudes = torch.clamp(config["magnitude"] + config["magnitude_std"] * noise, 0.0, 10.0)
    signs = (torch.randint(2, (batch, layers), generator=generator) * 2 - 1).to(torch.float64)
    values = randaugment_parameters(op_ids, magnitudes, signs, height, width)
    return RandAugmentParams(op_ids=torch.where(applied, op_ids, IDENTITY), values=values)


def _draw_erasing(recipe: Recipe, batch: int, height: int, width: int, generator) -> torch.Tensor:
    """timm RandomErasing (one box, area 2%..1/3, log-uniform aspect 0.3..1/0.3, strictly inside the image)."""
    erase = torch.rand(batch, generator=generator, dtype=torch.float64) < recipe.random_erasing_prob
    areas = height * width * (0.02 + (1 / 3 - 0.02) * torch.rand(batch, 10, generator=generator, dtype=torch.float64))
    log_ratio = math.log(0.3)
    ratios = torch.exp(log_ratio - 2 * log_ratio * torch.rand(batch, 10, generator=generator, dtype=torch.float64))
    positions = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
    heights = torch.round(torch.sqrt(areas * ratios)).long()
    widths = torch.round(torch.sqrt(areas / ratios)).long()
    fits = (widths < width) & (heights < height)
    boxes, found = _first_fitting_boxes(heights, widths, fits, positions, height, width)
    return torch.where((erase & found)[:, None], boxes, 0)


def sample_seed(seed: int, row: int) -> int:
    """The seed of row ``row`` of the batch drawn with ``seed``, for the random quantities drawn per sample on the
    device (RandomErasing's noise): a 63-bit hash, stable across runs, machines and Python versions."""
    digest = hashlib.blake2b(f"{seed},{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def draw_params(recipe: Recipe, batch: int, height: int, width: int, seed: int) -> BatchParams:
    """All random parameters of a ``batch``-sample batch of ``height x width`` images for ``recipe`` and ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    crop_offsets = flips = angles = autoaugment = cutout_centres = None
    resized_crops = randaugment = erasing_boxes = None
    if recipe.resized_crop_size:
        resized_crops = draw_resized_crops(recipe, batch, height, width, generator)
    if recipe.crop_padding:
        crop_offsets = torch.randint(2 * recipe.crop_padding + 1, (batch, 2), generator=generator)
    if recipe.hflip:
        flips = torch.rand(batch, generator=generator) < 0.5
    if recipe.rotate_degrees:
        angles = (torch.rand(batch, generator=generator, dtype=torch.float64) * 2 - 1) * recipe.rotate_degrees
    if recipe.autoaugment == "cifar10":
        autoaugment = _draw_autoaugment(batch, height, width, generator)
    if recipe.cutout_length:
        rows = torch.randint(height, (batch,), generator=generator)
        cols = torch.randint(width, (batch,), generator=generator)
        cutout_centres = torch.stack([rows, cols], dim=1)
    out_height, out_width = recipe.output_size(height, width)
    if recipe.randaugment:
        randaugment = _draw_randaugment(recipe, batch, out_height, out_width, generator)
    if recipe.random_erasing_prob:
        erasing_boxes = _draw_erasing(recipe, batch, out_height, out_width, generator)
    return BatchParams(
        crop_offsets=crop_offsets, flips=flips, angles=angles, autoaugment=autoaugment, cutout_centres=cutout_centres,
        resized_crops=resized_crops, randaugment=randaugment, erasing_boxes=erasing_boxes,
    )



def slice_params(params, rows: slice):
    """The parameters of rows `rows` of a batch (a data-parallel rank's block of the global batch): every tensor
    field, nested ones included, sliced along its first dimension."""
    values = {}
    for f in fields(params):
        value = getattr(params, f.name)
        if isinstance(value, torch.Tensor):
            value = value[rows]
        elif value is not None and hasattr(value, "__dataclass_fields__"):
            value = slice_params(value, rows)
        values[f.name] = value
    return type(params)(**values)
