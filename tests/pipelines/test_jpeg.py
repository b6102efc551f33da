"""JPEG pipelines over a generated ImageNet-like folder: decoding of ImageNet's odd files, replay equality, the
reference transforms (torchvision on PIL images) within the bounds of docs/semantics.md R27, DALI CPU vs the CPU
twin, bad files, and the host-drawn parameters."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

from fastkd.data.imagenet import load_imagenet
from fastkd.errors import DataError
from fastkd.pipelines import available_backends, build_jpeg_pipeline, jpeg_recipes
from fastkd.pipelines.jpeg import decode_rgb, draw_jpeg_params, output_geometry, read_encoded
from imagenet_on_disk import write_imagenet

GREY_LEVELS = dict(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))  # outputs are grey levels 0..255
needs_dali = pytest.mark.skipif("dali" not in available_backends(), reason="NVIDIA DALI is not installed")
TRAIN, TEST = jpeg_recipes("imagenet")
TRAIN_NO_ROTATION = jpeg_recipes("imagenet_100")[0]


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    return load_imagenet("imagenet", str(write_imagenet(tmp_path_factory.mktemp("imagenet"))))[0]


def pipeline(dataset, recipe, **kw):
    return build_jpeg_pipeline(dataset, recipe, **GREY_LEVELS, **kw)


def pil_rgb(path: str) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def test_grayscale_cmyk_and_png_named_jpeg_decode_as_pil_does(train_set):
    for path in train_set.files[:3]:  # grayscale JPEG, CMYK JPEG, PNG named .JPEG (imagenet_on_disk.ODD_FILES)
        data, size = read_encoded(path)
        decoded = decode_rgb(data, path)
        assert decoded.shape == (3, *size)
        assert torch.equal(decoded, torch.from_numpy(np.array(pil_rgb(path))).permute(2, 0, 1))


def test_same_indices_and_seed_give_identical_pixels_whatever_the_threads_or_prefetch(train_set):
    indices = torch.tensor([5, 0, 11, 2, 7, 1])
    plain = pipeline(train_set, TRAIN, workers=0, prefetch=0)
    x, y = plain(indices, seed=4)
    assert x.shape == (6, 3, 224, 224) and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, train_set.labels[indices])
    assert torch.equal(x, plain(indices, seed=4)[0])
    assert not torch.equal(x, plain(indices, seed=5)[0])
    threaded = pipeline(train_set, TRAIN, workers=3, prefetch=2)
    threaded.prefetch(indices, 4)
    assert torch.equal(x, threaded(indices, seed=4)[0])
    rows = slice(2, 5)  # a rank's block: drawn for the whole batch, built for its rows only
    assert torch.equal(x[rows], threaded(indices, 4, rows)[0])


def test_test_transform_is_torchvisions_resize_256_centre_crop_224_to_one_grey_level(train_set):
    indices = torch.arange(len(train_set))
    out, _ = pipeline(train_set, TEST)(indices, seed=0)
    reference = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
    expected = torch.stack([reference(pil_rgb(path)) for path in train_set.files]).float()
    assert (out - expected).abs().max() <= 1  # torchvision's uint8 tensor resize vs PIL's: rounding


def test_train_transform_is_the_reference_transform_on_the_drawn_parameters(train_set):
    """RandomResizedCrop -> flip -> RandomRotation on PIL images: one grey level but where nearest-neighbour
    rotation rounds a pixel centre the other way (<= 0.1% of the pixels)."""
    indices = torch.arange(len(train_set))
    out, _ = pipeline(train_set, TRAIN)(indices, seed=3)
    params = draw_jpeg_params(TRAIN, torch.tensor([read_encoded(p)[1] for p in train_set.files]), seed=3)
    expected = []
    for path, box, flip, angle in zip(train_set.files, params.boxes.tolist(), params.flips.tolist(),
                                      params.angles.tolist()):
        image = F.resized_crop(pil_rgb(path), *box, [224, 224], T.InterpolationMode.BILINEAR)
        image = F.rotate(F.hflip(image) if flip else image, angle, T.InterpolationMode.NEAREST, fill=0)
        expected.append(F.pil_to_tensor(image))
    diff = (out - torch.stack(expected).float()).abs()
    assert (diff > 1).double().mean() <= 1e-3


def test_parameters_follow_random_resized_crop_and_do_not_depend_on_other_rows():
    sizes = torch.tensor([[375, 500], [500, 333]] * 1000)
    params = draw_jpeg_params(TRAIN, sizes, seed=0)
    top, left, height, width = params.boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= sizes[:, 0]).all() and (left + width <= sizes[:, 1]).all()
    area = (height * width).double() / sizes.prod(1)
    assert area.min() > 0.07 and area.max() <= 1.0
    assert abs(params.flips.double().mean() - 0.5) < 0.05
    assert params.angles.abs().max() <= 15 and params.angles.abs().mean() > 5
    other = sizes.clone()
    other[0] = torch.tensor([1, 1])  # a skipped file stands in with (1, 1): the other rows keep their draws
    assert torch.equal(draw_jpeg_params(TRAIN, other, seed=0).boxes[1:], params.boxes[1:])
    assert draw_jpeg_params(TRAIN_NO_ROTATION, sizes, seed=0).angles is None
    targets, starts = output_geometry(TEST, torch.tensor([[375, 500], [500, 333]]))
    assert targets.tolist() == [[256, 341], [384, 256]] and starts.tolist() == [[16, 58], [80, 16]]


@pytest.mark.parametrize("damage, reason", [
    ("truncated", "cannot be decoded (Image is incomplete or truncated)"),
    ("not_an_image", "cannot be read as an image (not a recognised image format)"),
])
def test_a_bad_file_is_named_in_one_line_or_skipped_and_counted(tmp_path, damage, reason):
    dataset = load_imagenet("imagenet", str(write_imagenet(tmp_path / "imagenet", per_class=2)))[0]
    bad = dataset.files[3]
    data = open(bad, "rb").read()
    open(bad, "wb").write(data[:len(data) // 2] if damage == "truncated" else b"plain text, not a JPEG")
    indices = torch.tensor([2, 3, 4])
    with pytest.raises(DataError, match=rf"^{re.escape(bad)}: {re.escape(reason)}; .*data.on_bad_file=skip") as info:
        pipeline(dataset, TRAIN)(indices, seed=1)
    assert "\n" not in str(info.value)
    skipping = pipeline(dataset, TRAIN, on_bad_file="skip")
    x, y = skipping(indices, seed=1)
    assert torch.equal(y, dataset.labels[[2, 4]]) and skipping.skipped_files == 1
    healthy = pipeline(dataset, TRAIN)  # rows 0 and 2 alone: the bad file is then only read for its size
    assert torch.equal(x, torch.cat([healthy(indices, 1, slice(0, 1))[0], healthy(indices, 1, slice(2, 3))[0]]))


@needs_dali
@pytest.mark.parametrize("recipe", (TRAIN_NO_ROTATION, TEST), ids=lambda r: r.name)
def test_dali_cpu_matches_the_twin_to_one_grey_level(train_set, recipe):
    """Same boxes and flips; libjpeg-turbo's crop-on-decode and DALI's antialiased resize: one grey level."""
    indices = torch.tensor([11, 0, 6, 6, 2])
    dali, dali_labels = pipeline(train_set, recipe, backend="dali")(indices, seed=9)
    twin, twin_labels = pipeline(train_set, recipe, backend="torch")(indices, seed=9)
    assert torch.equal(dali_labels, twin_labels)
    assert (dali - twin).abs().max() <= 1 + 1e-3


@needs_dali
def test_dali_cpu_rotation_matches_the_twin_but_for_rounded_pixel_centres(train_set):
    indices = torch.arange(len(train_set))
    dali, _ = pipeline(train_set, TRAIN, backend="dali")(indices, seed=5)
    twin, _ = pipeline(train_set, TRAIN, backend="torch")(indices, seed=5)
    diff = (dali - twin).abs()
    assert (diff > 1 + 1e-3).double().mean() <= 1e-3 and diff.mean() <= 0.5
    assert torch.equal(dali[2:4], pipeline(train_set, TRAIN, backend="dali")(indices, 5, slice(2, 4))[0])
