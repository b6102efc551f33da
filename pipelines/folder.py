"""Folder data sets in the ImageNet layout (``root/<class>/<image>``): too large to hold decoded, so each batch
is read and decoded on demand.

``build_folder_pipeline`` gives the engine's ``pipeline(indices, seed)``: the host reads the files of the batch
(bytes and header sizes), draws the random parameters from ``seed`` (torchvision's RandomResizedCrop algorithm on
each image's own size, flips), and DALI (``fn.decoders.image_slice``, ``mixed`` on the GPU, ``cpu`` otherwise) or
torchvision (the fallback) decodes, crops, resizes, flips and normalizes. Sharding is the sampler's: every rank
passes its own indices. ``folder_reader_pipeline`` is the streaming alternative for deterministic passes
(evaluation): ``fn.readers.file`` with ``shard_id``/``num_shards`` feeding the same decode and resize steps.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .params import draw_resized_crops
from .recipes import Recipe

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")

FOLDER_RECIPES = {
    "imagenet_train": Recipe(name="imagenet_train", resized_crop_size=224, hflip=True),
    "imagenet_test": Recipe(name="imagenet_test", resize=256),
}
"""RandomResizedCrop(224, bilinear) + flip for training; Resize(256) + CenterCrop(224) for evaluation."""
TEST_CROP = 224


@dataclass(frozen=True)
class FolderDataset:
    """Sorted image paths and their labels (index of the class folder in sorted order, as ImageFolder)."""

    files: list[str]
    labels: torch.Tensor
    classes: list[str]

    @classmethod
    def scan(cls, root: str | Path) -> FolderDataset:
        """Every class folder must hold at least one image (as ImageFolder demands); files are opened lazily."""
        root = Path(root)
        layout = (f"{root}/<class>/*{{{','.join(IMAGE_SUFFIXES)}}}: point data.root at a folder with one "
                  "sub-folder of images per class")
        if not root.is_dir():
            raise DataError(f"{root}: {'is a file' if root.exists() else 'no such folder'}; expected {layout}")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not classes:
            raise DataError(f"{root}: no class folders; expected {layout}")
        files, labels = [], []
        for label, name in enumerate(classes):
            images = [p for p in sorted((root / name).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                raise DataError(f"{root / name}: class folder without images; add its images or remove it "
                                f"(expected {layout})")
            files += [str(p) for p in images]
            labels += [label] * len(images)
        return cls(files=files, labels=torch.tensor(labels, dtype=torch.int64), classes=classes)


def _read(files: list[str]) -> tuple[list[np.ndarray], torch.Tensor]:
    """Encoded bytes and (height, width) of each file; PIL parses only the header for the size."""
    encoded, sizes = [], []
    for path in files:
        try:
            data = np.fromfile(path, dtype=np.uint8)
            with Image.open(io.BytesIO(data.tobytes())) as image:
                width, height = image.size
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: {_unreadable(exc)}; replace or remove it") from None
        encoded.append(data)
        sizes.append((height, width))
    return encoded, torch.tensor(sizes, dtype=torch.int64)


def _unreadable(exc: Exception) -> str:
    """The reason, without PIL's in-memory stream repr."""
    if isinstance(exc, UnidentifiedImageError):
        reason = "not a recognised image format"
    else:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"cannot be read as an image ({reason})"


def decode_rgb(encoded: np.ndarray, path: str = "image") -> torch.Tensor:
    """PIL decode (libjpeg with fancy upsampling, as DALI's ``jpeg_fancy_upsampling``) to a uint8 CHW tensor."""
    try:
        with Image.open(io.BytesIO(encoded.tobytes())) as image:
            return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: {_unreadable(exc)}; replace or remove it") from None


def draw_folder_params(recipe: Recipe, sizes: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample crop boxes (top, left, height, width) before resizing, and flip bits, from ``seed``.

    Training: torchvision's RandomResizedCrop on each image's own size. Test: the whole image (resized, then the
    centre crop is taken after resizing).
    """
    generator = torch.Generator().manual_seed(seed)
    if recipe.resized_crop_size:
        boxes = torch.cat([draw_resized_crops(recipe, 1, int(h), int(w), generator) for h, w in sizes.tolist()])
    else:
        boxes = torch.cat([torch.zeros_like(sizes), sizes], dim=1)
    flips = torch.rand(len(sizes), generator=generator) < 0.5
    return boxes, flips if recipe.hflip else torch.zeros_like(flips)


def _resize_shorter(height: int, width: int, shorter: int) -> tuple[int, int]:
    """torchvision's Resize(int) output size: the shorter side becomes ``shorter``, aspect kept (truncated)."""
    if height <= width:
        return shorter, int(shorter * width / height)
    return int(shorter * height / width), shorter


class TorchFolderPipeline:
    """The fallback without DALI: PIL decode, then torchvision crop, resize (bilinear, antialiased) and flip, per
    sample on the host."""

    backend = "torch"

    def __init__(self, dataset: FolderDataset, recipe: Recipe, *, mean, std, device: torch.device,
                 dtype: torch.dtype, channels_last: bool) -> None:
        self.dataset, self.recipe, self.device = dataset, recipe, device
        self.dtype, self.channels_last = dtype, channels_last
        self.mean, self.std = list(mean), list(std)

    def _sample(self, path: str, encoded: np.ndarray, box: list[int], flip: bool) -> torch.Tensor:
        image = decode_rgb(encoded, path)
        if self.recipe.resized_crop_size:
            size = [self.recipe.resized_crop_size] * 2
            image = TF.resized_crop(image, *box, size, TF.InterpolationMode.BILINEAR, antialias=True)
        else:
            height, width = _resize_shorter(image.shape[-2], image.shape[-1], self.recipe.resize)
            image = TF.center_crop(TF.resize(image, [height, width], TF.InterpolationMode.BILINEAR, antialias=True),
                                   [TEST_CROP, TEST_CROP])
        return TF.horizontal_flip(image) if flip else image

    def __call__(self, indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        paths = [self.dataset.files[i] for i in indices.tolist()]
        encoded, sizes = _read(paths)
        boxes, flips = draw_folder_params(self.recipe, sizes, seed)
        batch = torch.stack([self._sample(*sample) for sample in zip(paths, encoded, boxes.tolist(), flips.tolist())])
        images = TF.normalize(TF.to_dtype(batch.to(self.device), torch.float32, scale=True), self.mean, self.std)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return images.to(dtype=self.dtype, memory_format=memory_format), self.dataset.labels[indices].to(self.device)


def _geometry(recipe: Recipe, sizes: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the resize target (height, width) of the decoded box and the (top, left) of the final crop:
    torchvision's Resize(int) truncates the long side, CenterCrop rounds its offsets."""
    if recipe.resized_crop_size:
        size = recipe.resized_crop_size
        return torch.full((len(sizes), 2), size), torch.zeros(len(sizes), 2, dtype=torch.int64)
    targets = torch.tensor([_resize_shorter(h, w, recipe.resize) for h, w in sizes.tolist()])
    starts = torch.tensor([[int(round((h - TEST_CROP) / 2.0)), int(round((w - TEST_CROP) / 2.0))]
                           for h, w in targets.tolist()])
    return targets, starts


class DaliFolderPipeline:
    """``pipeline(indices, seed)`` on DALI: host reads the files and draws the boxes, DALI decodes and augments."""

    backend = "dali"

    def __init__(self, dataset: FolderDataset, recipe: Recipe, *, mean, std, device: torch.device,
                 dtype: torch.dtype, channels_last: bool, num_threads: int = 2) -> None:
        self.dataset, self.recipe, self.device = dataset, recipe, device
        self.dtype, self.channels_last = dtype, channels_last
        self.mean, self.std, self.num_threads = mean, std, num_threads
        self.dali_device = "gpu" if device.type == "cuda" else "cpu"
        self._pipe, self._capacity = None, 0

    def _pipeline(self, batch_size: int):
        if self._pipe is None or batch_size > self._capacity:
            import nvidia.dali.fn as fn
            import nvidia.dali.types as types
            from nvidia.dali import pipeline_def

            recipe, device = self.recipe, self.dali_device

            @pipeline_def(exec_dynamic=True, prefetch_queue_depth=1)
            def graph():
                inputs = {name: fn.external_source(name=name, dtype=types.INT32)
                          for name in ("box_start", "box_shape", "resize_to", "crop_start", "flip")}
                encoded = fn.external_source(name="encoded", dtype=types.UINT8)
                images = fn.decoders.image_slice(
                    encoded, start=inputs["box_start"], shape=inputs["box_shape"], axis_names="HW",
                    device="mixed" if device == "gpu" else "cpu", output_type=types.RGB, jpeg_fancy_upsampling=True,
                )
                images = fn.resize(images, size=fn.cast(inputs["resize_to"], dtype=types.FLOAT),
                                   interp_type=types.INTERP_LINEAR, antialias=True)
                side = recipe.resized_crop_size or TEST_CROP
                images = fn.slice(images, start=inputs["crop_start"], shape=[side, side], axis_names="HW")
                return fn.crop_mirror_normalize(
                    images, mirror=inputs["flip"], mean=[255.0 * m for m in self.mean],
                    std=[255.0 * s for s in self.std], dtype=types.FLOAT,
                    output_layout="HWC" if self.channels_last else "CHW",
                )

            device_id = (self.device.index or 0) if self.device.type == "cuda" else None
            self._pipe = graph(batch_size=batch_size, num_threads=self.num_threads, device_id=device_id)
            self._pipe.build()
            self._capacity = batch_size
        return self._pipe

    def __call__(self, indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        from nvidia.dali.plugin.pytorch import feed_ndarray

        encoded, sizes = _read([self.dataset.files[i] for i in indices.tolist()])
        boxes, flips = draw_folder_params(self.recipe, sizes, seed)
        resize_to, crop_start = _geometry(self.recipe, sizes, boxes)
        pipe = self._pipeline(len(indices))
        pipe.feed_input("encoded", encoded)
        for name, values in (("box_start", boxes[:, :2]), ("box_shape", boxes[:, 2:]), ("resize_to", resize_to),
                             ("crop_start", crop_start), ("flip", flips)):
            pipe.feed_input(name, values.to(torch.int32).numpy())
        (output,) = pipe.run()
        dense = output.as_tensor()
        images = torch.empty(dense.shape(), dtype=torch.float32, device=self.device)
        stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        feed_ndarray(dense, images, cuda_stream=stream)
        images = images.permute(0, 3, 1, 2) if self.channels_last else images
        return images.to(self.dtype), self.dataset.labels[indices].to(self.device)


def build_folder_pipeline(
    dataset: FolderDataset,
    recipe: Recipe | str,
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    device: torch.device | str = "cpu",
    backend: Literal["auto", "torch", "dali"] = "auto",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
):
    """``pipeline(indices, seed) -> (images, labels)`` over a folder data set; recipes: ``FOLDER_RECIPES``."""
    from . import DALI_INSTALL_HINT, dali_available

    if isinstance(recipe, str):
        if recipe not in FOLDER_RECIPES:
            raise ValueError(f"unknown folder recipe {recipe!r}; choose one of: {', '.join(FOLDER_RECIPES)}")
        recipe = FOLDER_RECIPES[recipe]
    device = torch.device(device)
    if backend == "auto":
        backend = "dali" if dali_available() else "torch"
    if backend == "dali" and not dali_available():
        raise ImportError(DALI_INSTALL_HINT)
    if backend not in ("torch", "dali"):
        raise ValueError(f"unknown pipeline backend {backend!r}; choose one of: auto, torch, dali")
    cls = DaliFolderPipeline if backend == "dali" else TorchFolderPipeline
    return cls(dataset, recipe, mean=mean, std=std, device=device, dtype=dtype, channels_last=channels_last)


def folder_reader_pipeline(
    dataset: FolderDataset,
    *,
    batch_size: int,
    shard_id: int = 0,
    num_shards: int = 1,
    device: Literal["gpu", "cpu"] = "cpu",
    device_id: int | None = None,
    num_threads: int = 2,
):
    """Sharded streaming pass for evaluation: ``fn.readers.file`` -> decoder -> Resize(256) -> CenterCrop(224).

    Outputs per batch (uint8 HWC images, sample indices into ``dataset.files``; labels are
    ``dataset.labels[indices]``). Each shard reads its own
    contiguous part of the file list; ``pad_last_batch`` gives every shard the same number of batches by repeating
    its last sample, which the caller drops by its index (``epoch_batches`` gives the count).
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    @pipeline_def(exec_dynamic=True)
    def graph():
        encoded, sample_index = fn.readers.file(
            files=dataset.files, labels=list(range(len(dataset.files))), shard_id=shard_id, num_shards=num_shards,
            pad_last_batch=True, random_shuffle=False, name="reader",
        )
        decoder_device = "mixed" if device == "gpu" else "cpu"
        images = fn.decoders.image(encoded, device=decoder_device, output_type=types.RGB, jpeg_fancy_upsampling=True)
        resize_to, crop_start = _test_geometry_in_graph(fn.peek_image_shape(encoded, dtype=types.INT32))
        images = fn.resize(images, size=fn.cast(resize_to, dtype=types.FLOAT), interp_type=types.INTERP_LINEAR,
                           antialias=True)
        return fn.slice(images, start=crop_start, shape=[TEST_CROP, TEST_CROP], axis_names="HW"), sample_index

    pipe = graph(batch_size=batch_size, num_threads=num_threads, device_id=device_id)
    pipe.build()
    return pipe


def _test_geometry_in_graph(shape):
    """:func:`_geometry` of the test recipe as DALI integer arithmetic on the (H, W, C) header shape."""
    import nvidia.dali.fn as fn

    height, width = shape[0], shape[1]
    shorter = FOLDER_RECIPES["imagenet_test"].resize
    tall = height > width
    longer = (shorter * (tall * height + (tall ^ True) * width)) // (tall * width + (tall ^ True) * height)
    out_h = tall * longer + (tall ^ True) * shorter
    out_w = tall * shorter + (tall ^ True) * longer

    def centre(side):  # int(round((side - crop) / 2)), Python's round: halves go to the even neighbour
        excess = side - TEST_CROP
        half = excess // 2
        return half + (excess % 2) * (half % 2)

    return fn.stack(out_h, out_w), fn.stack(centre(out_h), centre(out_w))


def epoch_batches(num_samples: int, batch_size: int, num_shards: int) -> int:
    """Batches per shard per epoch of :func:`folder_reader_pipeline` (the largest shard, rounded up)."""
    largest_shard = -(-num_samples // num_shards)
    return -(-largest_shard // batch_size)
