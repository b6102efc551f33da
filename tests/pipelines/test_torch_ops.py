"""Each batched per-sample op against torchvision.transforms.v2.functional applied one sample at a time."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from pipeline_oracle import autoaugment_op, make_images, randaugment_op

from fastkd.pipelines import torch_ops
from fastkd.pipelines.policies import OPS, RANDAUGMENT_OPS, randaugment_parameters, signed_parameter
from fastkd.pipelines.torch_pipeline import _AUTOAUGMENT_OPS, randaugment_ops

SIZE = 32


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """uint8 NCHW with the channels_last strides the pipeline produces; a flat grey image covers degenerate cases."""
    batch = make_images(48, SIZE, seed=1).permute(0, 3, 1, 2)
    batch[0] = 90
    return batch


def _op_values(op: str) -> list[float]:
    """Parameter values of ``op`` for magnitude indices 1..9 and both signs (index 0 would give torchvision's
    solarize a threshold of 256, which it rejects)."""
    return sorted({signed_parameter(op, index, sign, SIZE, SIZE) for index in range(1, 10) for sign in (-1, 1)})


def _assert_pixels_equal(got: torch.Tensor, expected: torch.Tensor) -> None:
    diff = (got.int() - expected.int()).abs()
    assert diff.max() == 0, f"{int((diff > 0).sum())} pixels differ, worst by {int(diff.max())} grey levels"


# Ops that sample bilinearly: their float32 weights go through grid_sample's SIMD kernels, whose summation order
# depends on the CPU and on the batch shape (a batch here, one image in torchvision), so a value sitting on .5
# may round either way. Stated bound: one grey level, in at most 1 pixel in 1,000.
BILINEAR_AUTOAUGMENT_OPS = {"shear_x", "shear_y"}
BILINEAR_RANDAUGMENT_OPS = {"rotate", "shear_x", "shear_y", "translate_x", "translate_y"}


def _assert_pixels_within_rounding(got: torch.Tensor, expected: torch.Tensor) -> None:
    diff = (got.int() - expected.int()).abs()
    differing = int((diff > 0).sum())
    assert diff.max() <= 1 and differing <= diff.numel() // 1000, (
        f"{differing} pixels differ, worst by {int(diff.max())} grey levels")


@pytest.mark.parametrize("op", OPS)
def test_autoaugment_op_matches_torchvision(images, op):
    values = _op_values(op)
    params = torch.tensor([values[i % len(values)] for i in range(len(images))], dtype=torch.float64)
    got = _AUTOAUGMENT_OPS[op](images.clone(), params)
    expected = torch.stack([autoaugment_op(image, op, float(v)) for image, v in zip(images, params)])
    (_assert_pixels_within_rounding if op in BILINEAR_AUTOAUGMENT_OPS else _assert_pixels_equal)(got, expected)


@pytest.mark.parametrize("op", RANDAUGMENT_OPS)
def test_randaugment_op_matches_torchvision(images, op):
    fill = (124.0, 116.0, 104.0)
    batch = len(images)
    op_ids = torch.full((batch,), RANDAUGMENT_OPS.index(op))
    magnitudes = torch.linspace(0, 10, batch, dtype=torch.float64)
    signs = torch.tensor([(-1.0) ** i for i in range(batch)], dtype=torch.float64)
    values = randaugment_parameters(op_ids, magnitudes, signs, SIZE, SIZE)
    got = randaugment_ops(fill)[op](images.clone(), values)
    expected = torch.stack([randaugment_op(image, op, float(v), list(fill)) for image, v in zip(images, values)])
    (_assert_pixels_within_rounding if op in BILINEAR_RANDAUGMENT_OPS else _assert_pixels_equal)(got, expected)


@pytest.mark.parametrize("fill", (0, 128))
def test_rotation_matches_torchvision_for_random_angles(images, fill):
    generator = torch.Generator().manual_seed(0)
    angles = torch.empty(len(images), dtype=torch.float64).uniform_(-180, 180, generator=generator)
    got = torch_ops.rotate(images, angles, fill)
    expected = torch.stack([TF.rotate(image, float(a), fill=fill) for image, a in zip(images, angles)])
    _assert_pixels_equal(got, expected)


@pytest.mark.parametrize("padding,fill,rotation", ((4, 0, 15.0), (4, 128, 0.0), (0, 0, 180.0), (4, 128, 180.0)))
def test_crop_flip_rotate_gather_matches_torchvision(images, padding, fill, rotation):
    generator = torch.Generator().manual_seed(1)
    batch = len(images)
    offsets = torch.randint(2 * padding + 1, (batch, 2), generator=generator)
    flips = torch.rand(batch, generator=generator) < 0.5
    angles = (torch.rand(batch, generator=generator, dtype=torch.float64) * 2 - 1) * rotation if rotation else None
    indices = torch.randperm(batch, generator=generator)
    pixels = torch_ops.with_fill_pixels(images.permute(0, 2, 3, 1), (fill, 0))
    got = torch_ops.crop_flip_rotate(pixels, (SIZE, SIZE), indices, offsets, flips, angles, padding)
    got = got.permute(0, 3, 1, 2)
    expected = []
    for i, index in enumerate(indices.tolist()):
        image = TF.crop(TF.pad(images[index], [padding], fill=fill), *offsets[i].tolist(), SIZE, SIZE)
        image = TF.horizontal_flip(image) if flips[i] else image
        expected.append(TF.rotate(image, float(angles[i]), fill=0) if angles is not None else image)
    _assert_pixels_equal(got, torch.stack(expected))


def test_cutout_box_is_clipped_at_the_border(images):
    centres = torch.tensor([[0, 0], [31, 31], [16, 5], [8, 8]])
    got = torch_ops.cutout_(images[:4].permute(0, 2, 3, 1).clone(), centres, 16)
    holes = (got == 0).all(dim=-1) & (images[:4] != 0).any(dim=1)
    assert holes.sum(dim=(1, 2)).tolist() == [64, 81, 16 * 13, 256]
    assert holes[2, 8:24, 0:13].all()


def test_autocontrast_matches_torchvision_on_flat_and_ramped_channels():
    """The sync-free autocontrast (torch.where instead of boolean-mask assignment) equals torchvision's, including
    channels whose minimum equals their maximum."""
    images = make_images(6, 9, seed=3).permute(0, 3, 1, 2).contiguous()
    images[0] = 77  # every channel flat
    images[1, 1] = 0  # one flat channel next to two ramped ones
    images[2, 2] = 255
    assert torch.equal(torch_ops.autocontrast(images), TF.autocontrast(images))
