"""Host-side draws of every random parameter of a batch: the replay-determinism core shared by all backends.

A batch's parameters come from a CPU ``torch.Generator`` seeded with the batch seed, in a fixed order, so they
depend only on (batch size, seed, recipe, image size) and never on the device or backend that applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .policies import CIFAR10_POLICY, IDENTITY, OP_ID, signed_parameter
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


def draw_params(recipe: Recipe, batch: int, height: int, width: int, seed: int) -> BatchParams:
    """All random parameters of a ``batch``-sample batch of ``height x width`` images for ``recipe`` and ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    crop_offsets = flips = angles = autoaugment = cutout_centres = None
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
    return BatchParams(
        crop_offsets=crop_offsets, flips=flips, angles=angles, autoaugment=autoaugment, cutout_centres=cutout_centres
    )

