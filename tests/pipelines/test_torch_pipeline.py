"""The device-resident torch pipeline against the torchvision per-sample oracle (tests/pipelines/pipeline_oracle.py)."""

from __future__ import annotations

import pytest
import torch
from pipeline_oracle import CIFAR100_MEAN, CIFAR100_STD, make_images, reference_batch, unnormalize

from fastkd.pipelines import available_backends, build_pipeline, get_recipe

RECIPES = ("none", "online_kd", "tiny_online_kd", "self_kd")


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    images = make_images(96, 32)
    return images, torch.arange(96) % 10


def _pipeline(data, recipe: str, **kwargs):
    images, labels = data
    return build_pipeline(images, labels, get_recipe(recipe), mean=CIFAR100_MEAN, std=CIFAR100_STD,
                          backend="torch", **kwargs)


@pytest.mark.parametrize("recipe", RECIPES)
def test_matches_torchvision_sample_by_sample(data, recipe):
    images, labels = data
    indices = torch.randperm(96, generator=torch.Generator().manual_seed(0))[:64]
    out, out_labels = _pipeline(data, recipe)(indices, seed=11)
    expected, _, expected_labels = reference_batch(images, labels, get_recipe(recipe), indices, seed=11)
    assert torch.equal(out_labels, expected_labels)
    pixels, expected_pixels = unnormalize(out), unnormalize(expected)
    assert (pixels - expected_pixels).abs().max() < 1e-3, "pixels differ from the torchvision oracle"
    torch.testing.assert_close(out, expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("recipe", RECIPES)
def test_is_a_pure_function_of_indices_and_seed(data, recipe):
    pipeline = _pipeline(data, recipe)
    indices = torch.tensor([5, 3, 3, 90, 0, 17])
    first, _ = pipeline(indices, seed=123)
    pipeline(torch.tensor([1, 2]), seed=9)  # an unrelated call in between must not matter
    again, _ = _pipeline(data, recipe)(indices, seed=123)
    assert torch.equal(first, again)
    assert torch.equal(first, pipeline(indices, seed=123)[0])
    if get_recipe(recipe).is_random:
        assert not torch.equal(first, pipeline(indices, seed=124)[0])


@pytest.mark.parametrize("recipe", ("online_kd", "self_kd"))
def test_randomness_is_per_sample(data, recipe):
    """One image repeated 32 times must come out as (nearly) 32 different augmentations."""
    indices = torch.full((32,), 7)
    out, _ = _pipeline(data, recipe)(indices, seed=3)
    distinct = {tuple(sample.flatten().tolist()) for sample in out.to(torch.float16)}
    assert len(distinct) >= 30


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16, torch.float16))
@pytest.mark.parametrize("channels_last", (True, False))
def test_layout_dtype_and_value_range(data, dtype, channels_last):
    out, labels = _pipeline(data, "self_kd", dtype=dtype, channels_last=channels_last)(torch.arange(40), seed=0)
    assert out.shape == (40, 3, 32, 32) and out.dtype == dtype and labels.dtype == torch.int64
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    low = (0 - torch.tensor(CIFAR100_MEAN)) / torch.tensor(CIFAR100_STD)
    high = (1 - torch.tensor(CIFAR100_MEAN)) / torch.tensor(CIFAR100_STD)
    per_channel = out.float().transpose(0, 1).flatten(1)
    assert (per_channel.min(1).values >= low - 0.02).all() and (per_channel.max(1).values <= high + 0.02).all()


def test_none_recipe_is_plain_normalisation(data):
    images, _ = data
    out, _ = _pipeline(data, "none")(torch.tensor([4, 2]), seed=0)
    mean, std = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)
    expected = (images[[4, 2]].permute(0, 3, 1, 2) / 255.0 - mean) / std
    torch.testing.assert_close(out, expected, rtol=0, atol=2e-6)


def test_64px_recipe_keeps_size(data):
    images = make_images(8, 64)
    pipeline = build_pipeline(images, torch.zeros(8, dtype=torch.int64), get_recipe("tiny_online_kd"),
                              mean=CIFAR100_MEAN, std=CIFAR100_STD, backend="torch")
    assert pipeline(torch.arange(8), seed=1)[0].shape == (8, 3, 64, 64)


def test_bad_inputs_get_one_clear_error(data):
    images, labels = data
    recipe = get_recipe("none")
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\)"):
        build_pipeline(images.float(), labels, recipe, mean=CIFAR100_MEAN, std=CIFAR100_STD)
    with pytest.raises(ValueError, match="labels must be an int64"):
        build_pipeline(images, labels[:5], recipe, mean=CIFAR100_MEAN, std=CIFAR100_STD)
    with pytest.raises(ValueError, match="std > 0"):
        build_pipeline(images, labels, recipe, mean=CIFAR100_MEAN, std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="auto, torch, dali"):
        build_pipeline(images, labels, recipe, mean=CIFAR100_MEAN, std=CIFAR100_STD, backend="pil")


def test_auto_backend_on_cpu_is_torch(data):
    assert "torch" in available_backends()
    images, labels = data
    pipeline = build_pipeline(images, labels, get_recipe("none"), mean=CIFAR100_MEAN, std=CIFAR100_STD, device="cpu")
    assert pipeline.backend == "torch"


def test_missing_dali_gives_the_install_line(data, monkeypatch):
    import fastkd.pipelines as pipelines

    monkeypatch.setattr(pipelines, "dali_available", lambda: False)
    assert pipelines.available_backends() == ["torch"]
    images, labels = data
    with pytest.raises(ImportError, match=r"pip install fastkd\[dali\]"):
        build_pipeline(images, labels, get_recipe("none"), mean=CIFAR100_MEAN, std=CIFAR100_STD, backend="dali")



@pytest.mark.parametrize("dali_major, torch_cuda, mismatch", [(12, "13.0", True), (13, "13.0", False),
                                                              (12, "12.8", False), (13, None, False)])
def test_dali_built_for_another_cuda_than_torch_is_refused_on_the_gpu(data, monkeypatch, dali_major, torch_cuda,
                                                                     mismatch):
    """Two CUDA runtimes in one process: `auto` keeps the torch pipeline, an explicit `dali` on CUDA is one line
    naming both versions and the extra to install (a CPU torch, torch_cuda None, never conflicts)."""
    import fastkd.pipelines as pipelines
    from fastkd.errors import FastkdError

    monkeypatch.setattr(pipelines, "dali_cuda_major", lambda: dali_major)
    monkeypatch.setattr(pipelines.torch.version, "cuda", torch_cuda)
    message = pipelines.dali_cuda_mismatch()
    assert (message is not None) == mismatch
    if mismatch:
        assert f"CUDA {dali_major}" in message and torch_cuda in message and "fastkd[dali]" in message
        assert "\n" not in message
        monkeypatch.setattr(pipelines, "dali_available", lambda: True)
        images, labels = data
        with pytest.raises(FastkdError, match="DALI is built for CUDA 12 but torch for CUDA 13.0"):
            build_pipeline(images, labels, get_recipe("none"), mean=CIFAR100_MEAN, std=CIFAR100_STD,
                           backend="dali", device="cuda")


def test_installed_dali_wheel_names_its_cuda_major():
    import fastkd.pipelines as pipelines

    if pipelines.dali_available():
        assert pipelines.dali_cuda_major() in (11, 12, 13)
    else:
        assert pipelines.dali_cuda_major() is None

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("recipe", ("vit", "vit_test"))
def test_vit_recipes_match_torchvision_sample_by_sample(data, recipe):
    images, labels = data
    indices = torch.arange(0, 96, 4)
    pipeline = build_pipeline(images, labels, get_recipe(recipe), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                              backend="torch")
    out, _ = pipeline(indices, seed=17)
    expected, _, _ = reference_batch(images, labels, get_recipe(recipe), indices, seed=17, mean=IMAGENET_MEAN,
                                     std=IMAGENET_STD)
    assert out.shape == (len(indices), 3, 224, 224)
    if recipe == "vit_test":
        torch.testing.assert_close(out, expected, rtol=0, atol=2e-6)
    else:  # the batched bicubic crop is within 2 grey levels of PIL's (test_vit_recipe.py); the ops after it are
        # exact, but posterize/solarize/equalize can turn a one-level difference into a large one on a few pixels
        assert ((out - expected).abs() > 2e-6).double().mean() < 1e-4
    assert torch.equal(out, pipeline(indices, seed=17)[0])


def test_vit_parameters_follow_timm_and_torchvision_ranges():
    from fastkd.pipelines.params import draw_params
    from fastkd.pipelines.policies import IDENTITY

    params = draw_params(get_recipe("vit"), 4000, 32, 32, seed=8)
    top, left, height, width = params.resized_crops.T
    assert (top >= 0).all() and (left >= 0).all() and (top + height <= 32).all() and (left + width <= 32).all()
    area = (height * width).double() / (32 * 32)
    assert area.min() >= 0.05 and area.max() <= 1.0  # scale 0.08..1 up to rounding of the box sides
    applied = (params.randaugment.op_ids != IDENTITY).double().mean()
    assert abs(applied - 0.5) < 0.03, "each of the two RandAugment layers applies with probability 0.5"
    erased = params.erasing_boxes[:, 2] > 0
    assert abs(erased.double().mean() - 0.25) < 0.03
    boxes = params.erasing_boxes[erased]
    erased_area = (boxes[:, 2] * boxes[:, 3]).double() / (224 * 224)
    assert erased_area.min() >= 0.015 and erased_area.max() <= 0.35
    assert (boxes[:, 0] + boxes[:, 2] <= 224).all() and (boxes[:, 1] + boxes[:, 3] <= 224).all()


def test_auto_keeps_the_vit_recipe_on_torch(data):
    import fastkd.pipelines as pipelines

    images, labels = data
    assert not pipelines.dali_runs_whole(get_recipe("vit")) and pipelines.dali_runs_whole(get_recipe("self_kd"))
    pipeline = build_pipeline(images, labels, get_recipe("vit"), mean=CIFAR100_MEAN, std=CIFAR100_STD)
    assert pipeline.backend == "torch"