"""Folder data sets (ImageNet layout): scan, the torchvision fallback, the DALI twin and the sharded DALI reader."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from fastkd.errors import DataError
from fastkd.pipelines import available_backends
from fastkd.pipelines.folder import (
    FOLDER_RECIPES,
    FolderDataset,
    build_folder_pipeline,
    decode_rgb,
    draw_folder_params,
    epoch_batches,
)

GREY_LEVELS = (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)  # mean/std that leave grey levels 0..255
needs_dali = pytest.mark.skipif("dali" not in available_backends(), reason="NVIDIA DALI is not installed")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> FolderDataset:
    """3 classes x 5 JPEGs of assorted sizes (smooth colour fields plus noise)."""
    root = tmp_path_factory.mktemp("imagenet_like")
    rng = np.random.default_rng(0)
    for name in ("n02", "n01", "n03"):
        (root / name).mkdir()
        for k in range(5):
            height, width = rng.integers(120, 330, 2)
            coarse = Image.fromarray(rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8))
            image = np.asarray(coarse.resize((int(width), int(height)), Image.BILINEAR), dtype=np.float64)
            noisy = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / name / f"img{k}.JPEG", quality=90)
        (root / name / "notes.txt").write_text("not an image")
    return FolderDataset.scan(root)


def test_scan_sorts_classes_and_skips_other_files(folder):
    assert folder.classes == ["n01", "n02", "n03"]
    assert len(folder.files) == 15 and all(f.endswith(".JPEG") for f in folder.files)
    assert folder.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert Path(folder.files[5]).parent.name == "n02"


def test_scan_of_an_empty_root_says_what_layout_it_wants(tmp_path):
    with pytest.raises(DataError, match="no class folders; expected .*one sub-folder of images per class"):
        FolderDataset.scan(tmp_path)


@pytest.mark.parametrize("damage, message", [
    ("missing_root", r"absent: no such folder"),
    ("root_is_file", r"absent: is a file"),
    ("empty_class", r"n02: class folder without images"),
    ("only_text_files", r"n01: class folder without images"),
])
def test_scan_names_the_offending_folder_in_one_line(tmp_path, damage, message):
    root = tmp_path / "absent"
    if damage == "root_is_file":
        root.write_text("not a folder")
    elif damage != "missing_root":
        for name in ("n01", "n02"):
            (root / name).mkdir(parents=True)
            (root / name / "notes.txt").write_text("not an image")
        if damage == "empty_class":
            Image.new("RGB", (8, 8)).save(root / "n01" / "a.JPEG")
    with pytest.raises(DataError, match=message) as info:
        FolderDataset.scan(root)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("damage, reason", [
    ("not_an_image", r"not a recognised image format"),
    ("truncated", r"[^)]*[Tt]runcated"),
    ("a_folder", r"Is a directory"),
])
def test_unreadable_image_is_named_when_its_batch_is_read(tmp_path, damage, reason):
    root = tmp_path / "images"
    (root / "n01").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / "n01" / f"{k}.JPEG")
    bad = root / "n01" / "1.JPEG"
    if damage == "not_an_image":
        bad.write_bytes(b"plain text, not a JPEG")
    elif damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:400])  # the header survives, the pixels do not
    else:
        bad.unlink()
        bad.mkdir()
    dataset = FolderDataset.scan(root)
    pipeline = build_folder_pipeline(dataset, "imagenet_test", mean=GREY_LEVELS[0], std=GREY_LEVELS[1],
                                     backend="torch")
    assert pipeline(torch.tensor([0]), seed=0)[0].shape == (1, 3, 224, 224)
    with pytest.raises(DataError, match=rf"^{re.escape(str(bad))}: cannot be read as an image \({reason}") as info:
        pipeline(torch.tensor([0, 1]), seed=0)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("recipe", ("imagenet_train", "imagenet_test"))
def test_torch_folder_pipeline_matches_torchvision(folder, recipe):
    indices = torch.tensor([0, 6, 11, 3])
    pipeline = build_folder_pipeline(folder, recipe, mean=GREY_LEVELS[0], std=GREY_LEVELS[1], backend="torch")
    out, labels = pipeline(indices, seed=3)
    assert out.shape == (4, 3, 224, 224) and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(labels, folder.labels[indices])
    images = [decode_rgb(np.fromfile(folder.files[i], dtype=np.uint8)) for i in indices.tolist()]
    sizes = torch.tensor([image.shape[-2:] for image in images])
    boxes, flips = draw_folder_params(FOLDER_RECIPES[recipe], sizes, seed=3)
    for got, image, box, flip in zip(out, images, boxes.tolist(), flips.tolist()):
        if recipe == "imagenet_train":
            expected = TF.resized_crop(image, *box, [224, 224], TF.InterpolationMode.BILINEAR, antialias=True)
        else:
            expected = TF.center_crop(TF.resize(image, 256, TF.InterpolationMode.BILINEAR, antialias=True), 224)
        expected = TF.horizontal_flip(expected) if flip else expected
        torch.testing.assert_close(got, expected.float(), rtol=0, atol=1e-3)
    assert torch.equal(out, pipeline(indices, seed=3)[0])


def test_folder_crop_boxes_follow_random_resized_crop(folder):
    sizes = torch.tensor([[300, 200]] * 2000)
    boxes, flips = draw_folder_params(FOLDER_RECIPES["imagenet_train"], sizes, seed=0)
    top, left, height, width = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + height <= 300).all() and (left + width <= 200).all()
    area = (height * width).double() / (300 * 200)
    assert area.min() > 0.07 and area.max() <= 1.0
    assert abs(flips.double().mean() - 0.5) < 0.05


@needs_dali
@pytest.mark.parametrize("recipe", ("imagenet_train", "imagenet_test"))
def test_dali_folder_pipeline_matches_torch_fallback(folder, recipe):
    """DALI decodes the crop box only and resizes with its own antialiased bilinear filter: one grey level."""
    indices = torch.tensor([14, 0, 7, 7, 2])
    common = dict(mean=GREY_LEVELS[0], std=GREY_LEVELS[1])
    dali_out, dali_labels = build_folder_pipeline(folder, recipe, backend="dali", **common)(indices, seed=9)
    torch_out, torch_labels = build_folder_pipeline(folder, recipe, backend="torch", **common)(indices, seed=9)
    assert torch.equal(dali_labels, torch_labels)
    assert (dali_out - torch_out).abs().max() <= 1 + 1e-3


@needs_dali
@pytest.mark.parametrize("num_shards", (1, 2, 4))
def test_reader_shards_cover_the_epoch_once_with_equal_batch_counts(folder, num_shards):
    from fastkd.pipelines.folder import folder_reader_pipeline

    batch_size = 3
    per_shard = []
    for shard_id in range(num_shards):
        pipe = folder_reader_pipeline(folder, batch_size=batch_size, shard_id=shard_id, num_shards=num_shards)
        seen = []
        for _ in range(epoch_batches(len(folder.files), batch_size, num_shards)):
            images, indices = pipe.run()
            assert images.as_tensor().shape() == [batch_size, 224, 224, 3]
            seen += np.array(indices.as_tensor()).flatten().tolist()
        per_shard.append(seen)
    assert len({len(seen) for seen in per_shard}) == 1, "every shard runs the same number of batches"
    unique = [set(seen) for seen in per_shard]  # padding repeats a shard's last sample
    assert set().union(*unique) == set(range(len(folder.files)))
    assert sum(len(u) for u in unique) == len(folder.files), "no sample in two shards"


@needs_dali
def test_reader_applies_the_test_transform(folder):
    from fastkd.pipelines.folder import folder_reader_pipeline

    images, indices = folder_reader_pipeline(folder, batch_size=4).run()
    indices = torch.from_numpy(np.array(indices.as_tensor())).flatten().long()
    streamed = torch.from_numpy(np.array(images.as_tensor())).permute(0, 3, 1, 2).float()
    fallback = build_folder_pipeline(folder, "imagenet_test", mean=GREY_LEVELS[0], std=GREY_LEVELS[1],
                                     backend="torch")
    assert (streamed - fallback(indices, seed=0)[0]).abs().max() <= 1 + 1e-3
