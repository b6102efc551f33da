"""DALI graphs on the GPU against the torch pipeline and the torchvision oracle, for the same (indices, seed): the
replay contract (a batch is a pure function of its indices and seed) must hold on the device too."""

from __future__ import annotations

import pytest
import torch
from pipeline_oracle import CIFAR100_MEAN, CIFAR100_STD, make_images, reference_batch, unnormalize

from fastkd.pipelines import build_pipeline, dali_available, get_recipe
from fastkd.pipelines.params import draw_params
from fastkd.pipelines.policies import OPS

pytestmark = pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed (pip install fastkd[dali])")

N, SIZE = 160, 32
RECIPES = ("none", "online_kd", "tiny_online_kd", "self_kd")
NEAREST_TIE_FRACTION = 4e-3
"""Nearest-neighbour warps may round a pixel-centre tie to the neighbouring source pixel (tests/pipelines)."""


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_images(N, SIZE, seed=2), torch.arange(N) % 7


def _assert_agree(got: torch.Tensor, expected: torch.Tensor, recipe: str, seed: int) -> None:
    """Equal to float noise, except per sample the interpolation differences tests/pipelines documents: bilinear
    shears one grey level (one posterize step of 8 after them), nearest warps a few tie pixels."""
    diff = (unnormalize(got.float().cpu()) - unnormalize(expected.float().cpu())).abs().flatten(1)
    off = diff > 1e-3
    params = draw_params(get_recipe(recipe), len(got), SIZE, SIZE, seed)
    for i in range(len(got)):
        ops = set() if params.autoaugment is None else {OPS[o] for o in params.autoaugment.op_ids[i].tolist() if o >= 0}
        if ops & {"shear_x", "shear_y"}:
            assert diff[i].max() <= (8 if "posterize" in ops else 1) + 1e-3, (i, ops)
        elif params.angles is not None or ops & {"rotate", "translate_x", "translate_y"}:
            assert off[i].double().mean() <= NEAREST_TIE_FRACTION, (i, ops)
        else:
            assert not off[i].any(), f"sample {i} ({ops or 'no AutoAugment op'}) differs by {diff[i].max():.3f}"
    assert off.double().mean() <= NEAREST_TIE_FRACTION


@pytest.mark.parametrize("recipe", RECIPES)
def test_dali_gpu_matches_torch_pipeline_and_oracle(data, recipe):
    images, labels = data
    options = dict(mean=CIFAR100_MEAN, std=CIFAR100_STD, device="cuda", channels_last=False)
    dali = build_pipeline(images, labels, get_recipe(recipe), backend="dali", **options)
    torch_pipe = build_pipeline(images, labels, get_recipe(recipe), backend="torch", **options)
    assert dali.backend == "dali"
    indices = torch.randint(N, (N,), generator=torch.Generator().manual_seed(5))
    got, got_labels = dali(indices, seed=99)
    assert got.is_cuda and got.shape == (N, 3, SIZE, SIZE)
    expected, expected_labels = torch_pipe(indices, seed=99)
    assert torch.equal(got_labels.cpu(), expected_labels.cpu())
    _assert_agree(got, expected, recipe, seed=99)
    oracle, _, oracle_labels = reference_batch(images, labels, get_recipe(recipe), indices, seed=99)
    assert torch.equal(got_labels.cpu(), oracle_labels)
    _assert_agree(got, oracle, recipe, seed=99)


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
def test_dali_gpu_is_a_pure_function_of_indices_and_seed(data, dtype):
    """Replays regenerate the same pixels, in the engine's autocast input dtype and channels_last layout."""
    images, labels = data
    pipeline = build_pipeline(images, labels, get_recipe("online_kd"), mean=CIFAR100_MEAN, std=CIFAR100_STD,
                              device="cuda", backend="dali", dtype=dtype, channels_last=True)
    indices = torch.tensor([9, 1, 1, 150, 3])
    first, _ = pipeline(indices, seed=7)
    pipeline(torch.arange(40), seed=8)
    assert first.dtype == dtype and first.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(first, pipeline(indices, seed=7)[0])
    assert not torch.equal(first, pipeline(indices, seed=6)[0])
