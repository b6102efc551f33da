"""The ViT recipe (docs/semantics.md, ViT data): batched RandomResizedCrop against PIL (what timm runs), replay
from (indices, seed), per-sample erasing noise, `data.image_size`, the test transform, Tiny-ImageNet's sorted class
order, and the DALI backend (CPU-only) against the torch one within stated bounds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from datasets_on_disk import write_tiny_imagenet
from pipeline_oracle import make_images, unnormalize

from fastkd.data.readers import load_tiny_imagenet
from fastkd.pipelines import build_pipeline, deterministic_recipe, get_recipe
from fastkd.pipelines.params import draw_params
from fastkd.pipelines.torch_ops import resized_crops

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
N = 64


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_images(N, 32, seed=5), torch.arange(N) % 10


def pil_resized_crop(image: torch.Tensor, box: list[int], size: int, flip: bool) -> torch.Tensor:
    """timm's RandomResizedCropAndInterpolation on a PIL image: crop, PIL bicubic resize, then the flip."""
    top, left, height, width = box
    crop = Image.fromarray(image.numpy()).crop((left, top, left + width, top + height))
    out = torch.from_numpy(np.array(crop.resize((size, size), Image.BICUBIC))).permute(2, 0, 1)
    return out.flip(-1) if flip else out


@pytest.mark.parametrize("side", [32, 64])
def test_batched_resized_crop_is_within_two_grey_levels_of_pil(side):
    images = make_images(48, side, seed=side)
    params = draw_params(get_recipe("vit"), len(images), side, side, seed=3)
    ours = resized_crops(images, torch.arange(len(images)), params.resized_crops, 224, params.flips)
    expected = torch.stack([pil_resized_crop(images[i], params.resized_crops[i].tolist(), 224, bool(params.flips[i]))
                            for i in range(len(images))])
    diff = (ours.int() - expected.int()).abs()
    assert diff.max() <= 2  # float weights vs PIL's fixed-point ones; both keep the horizontal pass at 8 bits
    assert (diff > 0).double().mean() < 1e-3


def test_resized_crop_downscales_like_pil_too():
    images = make_images(8, 96, seed=1)
    boxes = torch.tensor([[0, 0, 96, 96], [10, 5, 80, 60], [3, 40, 50, 56], [0, 0, 96, 40]] * 2)
    flips = torch.tensor([False, True] * 4)
    ours = resized_crops(images, torch.arange(8), boxes, 24, flips)
    expected = torch.stack([pil_resized_crop(images[i], boxes[i].tolist(), 24, bool(flips[i])) for i in range(8)])
    assert (ours.int() - expected.int()).abs().max() <= 2


def test_same_indices_and_seed_replay_the_same_pixels(data):
    images, labels = data
    pipeline = build_pipeline(images, labels, get_recipe("vit"), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    indices = torch.tensor([5, 3, 60, 3, 17, 42, 8, 9, 1, 0, 33, 21])
    first, first_labels = pipeline(indices, seed=11)
    again, _ = pipeline(indices.clone(), seed=11)
    other, _ = pipeline(indices, seed=12)
    assert torch.equal(first, again) and torch.equal(first_labels, labels[indices])
    assert not torch.equal(first, other)
    assert first.shape == (12, 3, 224, 224) and first.dtype == torch.float32


def test_erasing_noise_is_keyed_per_sample_so_a_rank_block_equals_the_slice(data):
    images, labels = data
    pipeline = build_pipeline(images, labels, get_recipe("vit"), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    indices = torch.arange(32)
    params = draw_params(get_recipe("vit"), len(indices), 32, 32, seed=4)
    erased = torch.nonzero(params.erasing_boxes[:, 2] > 0).squeeze(1)
    assert len(erased) >= 3
    whole, _ = pipeline(indices, seed=4)
    for start in (0, 8, 24):
        block, _ = pipeline(indices, seed=4, rows=slice(start, start + 8))
        assert torch.equal(block, whole[start:start + 8])
    # inside a box the values are standard-normal noise, not image pixels
    top, left, height, width = params.erasing_boxes[erased[0]].tolist()
    noise = whole[erased[0], :, top:top + height, left:left + width]
    assert abs(float(noise.mean())) < 0.3 and 0.7 < float(noise.std()) < 1.3


def test_image_size_overrides_the_crop_and_the_test_resize(data):
    images, labels = data
    assert get_recipe("vit").resized_crop_size == 224 and get_recipe("vit_test").resize == 224
    assert get_recipe("vit", 48).resized_crop_size == 48 and get_recipe("vit_test", 48).resize == 48
    assert get_recipe("online_kd", 48) == get_recipe("online_kd")
    with pytest.raises(ValueError, match="image_size"):
        get_recipe("vit", 0)
    train = build_pipeline(images, labels, get_recipe("vit", 48), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    test = build_pipeline(images, labels, get_recipe("vit_test", 48), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert train(torch.arange(6), seed=1)[0].shape == (6, 3, 48, 48)
    assert test(torch.arange(6), seed=1)[0].shape == (6, 3, 48, 48)


def test_test_transform_is_a_deterministic_bilinear_resize(data):
    images, labels = data
    assert deterministic_recipe("vit") == "vit_test" and deterministic_recipe("online_kd") == "none"
    pipeline = build_pipeline(images, labels, get_recipe("vit_test"), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    indices = torch.arange(8)
    assert torch.equal(pipeline(indices, seed=1)[0], pipeline(indices, seed=2)[0])


def test_tiny_imagenet_sorted_class_order(tmp_path):
    wnids = ["n09999999", "n01443537", "n05555555"]  # wnids.txt order is not sorted
    write_tiny_imagenet(tmp_path, wnids, per_class=2, val_per_class=1)
    by_file, by_file_val = load_tiny_imagenet(str(tmp_path), str(tmp_path / "cache"))
    by_name, by_name_val = load_tiny_imagenet(str(tmp_path), str(tmp_path / "cache"), class_order="sorted")
    assert torch.equal(by_file.images, by_name.images)
    position = {w: i for i, w in enumerate(sorted(wnids))}
    remap = torch.tensor([position[w] for w in wnids])
    assert torch.equal(by_name.labels, remap[by_file.labels])
    assert torch.equal(by_name_val.labels, remap[by_file_val.labels])
    assert by_name.labels.tolist() == [0, 0, 1, 1, 2, 2]  # files sorted by path: n014.., n055.., n099..


# --------------------------------------------------------------------------------------------------- DALI
def _grey_level_differences(dali: torch.Tensor, torch_out: torch.Tensor) -> torch.Tensor:
    return (unnormalize(dali, IMAGENET_MEAN, IMAGENET_STD) - unnormalize(torch_out, IMAGENET_MEAN, IMAGENET_STD)).abs()


GEOMETRY_ONLY = dataclasses.replace(get_recipe("vit"), randaugment=None, random_erasing_prob=0.0)


@pytest.mark.parametrize(("recipe", "max_levels", "mean_levels", "over_3_fraction"), [
    # DALI resamples the crop in float and replicates its edges; PIL and the torch backend keep the horizontal
    # pass at 8 bits and renormalise the taps at the edges (measured: at most 7 grey levels, 0.26 on average,
    # under 1e-4 of the values more than 3 apart)
    (GEOMETRY_ONLY, 8.0, 0.3, 2e-4),
    (get_recipe("vit_test"), 1.0, 0.2, 0.0),
], ids=["crop_resize_flip", "vit_test"])
def test_dali_cpu_matches_torch_within_the_interpolation_bound(data, recipe, max_levels, mean_levels,
                                                               over_3_fraction):
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install fastkd[dali])")
    images, labels = data
    indices = torch.arange(0, N, 2)
    dali = build_pipeline(images, labels, recipe, mean=IMAGENET_MEAN, std=IMAGENET_STD, backend="dali")
    reference = build_pipeline(images, labels, recipe, mean=IMAGENET_MEAN, std=IMAGENET_STD, backend="torch")
    assert dali.backend == "dali"
    got, got_labels = dali(indices, seed=9)
    expected, expected_labels = reference(indices, seed=9)
    diff = _grey_level_differences(got, expected)
    assert torch.equal(got_labels, expected_labels)
    assert diff.max() <= max_levels + 1e-3 and diff.mean() < mean_levels
    assert (diff > 3.001).double().mean() <= over_3_fraction
    assert torch.equal(dali(indices, seed=9)[0], got)


def test_dali_cpu_full_vit_recipe_takes_the_same_parameters(data):
    """Same crops, flips, RandAugment ops and erasing noise: the erased boxes agree exactly, the rest within the
    crop's bound except where a threshold op (posterize, solarize, equalize) turns a level into many."""
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install fastkd[dali])")
    images, labels = data
    indices = torch.arange(N)
    dali = build_pipeline(images, labels, get_recipe("vit"), mean=IMAGENET_MEAN, std=IMAGENET_STD, backend="dali")
    reference = build_pipeline(images, labels, get_recipe("vit"), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                               backend="torch")
    got, expected = dali(indices, seed=5)[0], reference(indices, seed=5)[0]
    diff = _grey_level_differences(got, expected)
    assert diff.mean() < 0.5 and (diff > 8.001).double().mean() < 2e-3
    boxes = draw_params(get_recipe("vit"), N, 32, 32, seed=5).erasing_boxes
    for i in torch.nonzero(boxes[:, 2] > 0).squeeze(1).tolist():
        top, left, height, width = boxes[i].tolist()
        window = (slice(None), slice(top, top + height), slice(left, left + width))
        assert torch.equal(got[i][window], expected[i][window])


# ---------------------------------------------------------------------------------------- trainer wiring
@pytest.mark.parametrize("augment", ["default", "none"])
def test_trainer_builds_the_vit_pipelines_at_the_configured_size(tmp_path, augment):
    from fastkd.config import load_config
    from fastkd.engine.trainer import Trainer

    cfg = load_config(None, [
        "name=vit", f"output_dir={tmp_path}", "method=vit_base", "model.student=deit_tiny", "data.dataset=digits",
        "data.image_size=32", "data.batch_size=100", "data.drop_last=true", f"data.augment={augment}",
        "vit.model_args={depth: 1, embed_dim: 32, num_heads: 2}", "optim.name=adamw", "train.device=cpu",
        "train.progress=false", "train.tensorboard=false"])
    trainer = Trainer(cfg, tmp_path / "vit", quiet=True)
    assert trainer.test_pipe.recipe == get_recipe("vit_test", 32)
    assert trainer.train_pipe.recipe == (get_recipe("vit", 32) if augment == "default" else get_recipe("vit_test", 32))
    assert len(trainer.sampler) == len(trainer.train_set) // 100  # drop_last: the partial batch is dropped
    images, _ = trainer.train_pipe(trainer.sampler.batch(0, 0), trainer.sampler.batch_seed(0, 0))
    assert images.shape == (100, 3, 32, 32)


def test_sorted_class_order_skips_non_wnid_folders_and_names_unknown_val_classes(tmp_path):
    from fastkd.errors import DataError

    write_tiny_imagenet(tmp_path, ["n02", "n01"], per_class=2, val_per_class=1)
    base = tmp_path / "tiny-imagenet-200"
    (base / "train" / "notes" / "images").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(base / "train" / "notes" / "images" / "x.JPEG")  # the reference skips it
    train, _ = load_tiny_imagenet(str(tmp_path), str(tmp_path / "cache"), class_order="sorted")
    assert train.labels.tolist() == [0, 0, 1, 1] and train.num_classes == 2
    annotations = base / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text().replace("\tn02\t", "\tn03\t"))
    with pytest.raises(DataError, match="wnid n03 is not one of the train/ class folders"):
        load_tiny_imagenet(str(tmp_path), str(tmp_path / "cache"), class_order="sorted")
