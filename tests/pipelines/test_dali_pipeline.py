"""The DALI backend, run CPU-only (device_id=None): against the torchvision oracle and against the torch backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pipeline_oracle import CIFAR100_MEAN, CIFAR100_STD, autoaugment_op, make_images, reference_batch, unnormalize

pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install fastkd[dali])")

from nvidia.dali import types  # noqa: E402

from fastkd.pipelines import build_pipeline, get_recipe  # noqa: E402
from fastkd.pipelines.dali_pipeline import in_memory_pipeline, parameter_feeds  # noqa: E402
from fastkd.pipelines.params import AutoAugmentParams, BatchParams, draw_params  # noqa: E402
from fastkd.pipelines.policies import IDENTITY, OP_ID, OPS, signed_parameter  # noqa: E402
from fastkd.pipelines.recipes import Recipe  # noqa: E402

N = 160
SIZE = 32
# Nearest-neighbour warps (rotation, translation) round pixel-centre ties differently from grid_sample: a few
# pixels per hundred thousand may show the neighbouring source pixel.
NEAREST_TIE_FRACTION = 1e-3


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_images(N, SIZE, seed=2), torch.arange(N) % 7


@pytest.fixture(scope="module")
def pipelines(data):
    """One DALI and one torch pipeline per recipe, built once (DALI builds take about a second)."""
    images, labels = data
    built = {}
    for name in ("none", "online_kd", "tiny_online_kd", "self_kd"):
        for backend in ("dali", "torch"):
            built[name, backend] = build_pipeline(images, labels, get_recipe(name), mean=CIFAR100_MEAN,
                                                  std=CIFAR100_STD, backend=backend)
    return built


def _differing(got: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Per-value grey-level differences (after undoing the normalisation)."""
    return (unnormalize(got) - unnormalize(expected)).abs()


def _assert_agree(got: torch.Tensor, expected: torch.Tensor, recipe: str, seed: int) -> None:
    """Exact (to float noise) except the documented interpolation differences, attributed per sample."""
    diff = _differing(got, expected).flatten(1)
    off = diff > 1e-3
    params = draw_params(get_recipe(recipe), len(got), SIZE, SIZE, seed)
    for i in range(len(got)):
        ops = set() if params.autoaugment is None else {OPS[o] for o in params.autoaugment.op_ids[i].tolist() if o >= 0}
        if ops & {"shear_x", "shear_y"}:
            # bilinear: DALI's weights differ by ~1e-3 from grid_sample's, so rounding may move one grey level,
            # which a following posterize (5 bits in this policy) can widen to one quantisation step of 8
            assert diff[i].max() <= (8 if "posterize" in ops else 1) + 1e-3, (i, ops)
        elif params.angles is not None or ops & {"rotate", "translate_x", "translate_y"}:
            assert off[i].double().mean() <= NEAREST_TIE_FRACTION * 4, (i, ops)
        else:
            assert not off[i].any(), f"sample {i} ({ops or 'no AutoAugment op'}) differs by {diff[i].max():.3f}"
    assert off.double().mean() <= NEAREST_TIE_FRACTION * 4


@pytest.mark.parametrize("recipe", ("none", "online_kd", "tiny_online_kd", "self_kd"))
def test_dali_matches_torchvision_oracle(data, pipelines, recipe):
    images, labels = data
    indices = torch.randperm(N, generator=torch.Generator().manual_seed(4))
    got, got_labels = pipelines[recipe, "dali"](indices, seed=21)
    expected, _, expected_labels = reference_batch(images, labels, get_recipe(recipe), indices, seed=21)
    assert torch.equal(got_labels, expected_labels)
    _assert_agree(got, expected, recipe, seed=21)


@pytest.mark.parametrize("recipe", ("none", "online_kd", "tiny_online_kd", "self_kd"))
def test_dali_matches_torch_backend_on_the_same_indices_and_seed(pipelines, recipe):
    indices = torch.randint(N, (N,), generator=torch.Generator().manual_seed(5))
    dali_images, dali_labels = pipelines[recipe, "dali"](indices, seed=99)
    torch_images, torch_labels = pipelines[recipe, "torch"](indices, seed=99)
    assert torch.equal(dali_labels, torch_labels)
    _assert_agree(dali_images, torch_images, recipe, seed=99)


@pytest.mark.parametrize("recipe", ("online_kd", "self_kd"))
def test_dali_is_a_pure_function_of_indices_and_seed(data, pipelines, recipe):
    pipeline = pipelines[recipe, "dali"]
    indices = torch.tensor([9, 1, 1, 150, 3])
    first, _ = pipeline(indices, seed=7)
    pipeline(torch.arange(40), seed=8)  # a larger batch in between (rebuilds the DALI pipeline) must not matter
    assert torch.equal(first, pipeline(indices, seed=7)[0])
    images, labels = data
    fresh = build_pipeline(images, labels, get_recipe(recipe), mean=CIFAR100_MEAN, std=CIFAR100_STD, backend="dali")
    assert torch.equal(first, fresh(indices, seed=7)[0])
    assert not torch.equal(first, pipeline(indices, seed=6)[0])


def test_dali_randomness_is_per_sample(pipelines):
    out, _ = pipelines["online_kd", "dali"](torch.full((24,), 5), seed=1)
    assert len({tuple(sample.flatten().tolist()) for sample in out.to(torch.float16)}) >= 22


@pytest.mark.parametrize("dtype,channels_last", ((torch.float32, True), (torch.float16, False), (torch.bfloat16, True)))
def test_dali_layout_dtype_and_range(data, dtype, channels_last):
    images, labels = data
    pipeline = build_pipeline(images, labels, get_recipe("online_kd"), mean=CIFAR100_MEAN, std=CIFAR100_STD,
                              backend="dali", dtype=dtype, channels_last=channels_last)
    out, out_labels = pipeline(torch.arange(16), seed=0)
    assert pipeline.backend == "dali"
    assert out.shape == (16, 3, SIZE, SIZE) and out.dtype == dtype and out_labels.dtype == torch.int64
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    pixels = unnormalize(out)
    assert pixels.min() > -1 and pixels.max() < 256
    reference, _ = build_pipeline(images, labels, get_recipe("online_kd"), mean=CIFAR100_MEAN, std=CIFAR100_STD,
                                  backend="torch", dtype=dtype)(torch.arange(16), seed=0)
    assert (out.float() - reference.float()).abs().max() < 0.02


def _op_values(op: str) -> list[float]:
    return sorted({signed_parameter(op, index, sign, SIZE, SIZE) for index in range(1, 10) for sign in (-1, 1)})


@pytest.fixture(scope="module")
def autoaugment_graph():
    """A DALI graph running only the AutoAugment stages, outputting grey levels (mean 0, std 1/255)."""
    recipe = Recipe(name="autoaugment_only", autoaugment="cifar10")
    names = sorted(parameter_feeds(recipe, draw_params(recipe, 1, SIZE, SIZE, 0), SIZE, SIZE))
    return recipe, in_memory_pipeline(recipe, names, height=SIZE, width=SIZE, device="cpu", mean=(0.0, 0.0, 0.0),
                                      std=(1 / 255,) * 3, output_dtype=types.FLOAT,
                                      output_layout="CHW", batch_size=48, num_threads=1, device_id=None)


@pytest.mark.parametrize("op", OPS)
def test_dali_autoaugment_op_matches_torchvision(autoaugment_graph, op):
    recipe, pipe = autoaugment_graph
    images = make_images(48, SIZE, seed=3)
    images[0] = 90  # a flat image: autocontrast and equalize leave it alone
    values = _op_values(op)
    value_column = torch.tensor([values[i % len(values)] for i in range(48)], dtype=torch.float64)
    params = BatchParams(autoaugment=AutoAugmentParams(
        subpolicy=torch.zeros(48, dtype=torch.int64),
        op_ids=torch.stack([torch.full((48,), OP_ID[op]), torch.full((48,), IDENTITY)], dim=1),
        values=torch.stack([value_column, torch.zeros(48, dtype=torch.float64)], dim=1),
    ))
    pipe.feed_input("images", images.numpy())
    for name, array in parameter_feeds(recipe, params, SIZE, SIZE).items():
        pipe.feed_input(name, array)
    got = torch.from_numpy(np.array(pipe.run()[0].as_tensor()))
    expected = torch.stack([autoaugment_op(image.permute(2, 0, 1), op, float(v))
                            for image, v in zip(images, value_column)]).float()
    diff = (got - expected).abs()
    if op in ("shear_x", "shear_y"):
        assert diff.max() <= 1, f"bilinear warp off by {diff.max()} grey levels"
    elif op in ("rotate", "translate_x", "translate_y"):
        assert (diff > 0).double().mean() <= NEAREST_TIE_FRACTION
    else:
        assert diff.max() == 0, f"{int((diff > 0).sum())} values differ, worst by {diff.max()}"
