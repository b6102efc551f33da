"""Data sets (uint8 arrays + labels, or ImageNet's file indexes) and the seeded sampler; augmentation lives in
fastkd.pipelines."""

from __future__ import annotations

from .imagenet import FileDataset, load_imagenet
from .readers import ArrayDataset, DataError, TinyClassOrder, load_arrays, train_size
from .sampler import EpochSampler, derive_seed

FILE_DATASETS = ("imagenet", "imagenet_100")
"""Data sets too large to hold decoded: a file index, decoded per batch."""


def load_dataset(name: str, root: str | None = None, *, test_fraction: float = 0.2, cache_dir: str | None = None,
                 class_order: TinyClassOrder = "wnids_file") -> tuple[ArrayDataset, ArrayDataset] | tuple[
                     FileDataset, FileDataset]:
    """(train, test) of a configured data set: uint8 arrays in memory, or file indexes for ImageNet."""
    if name in FILE_DATASETS:
        return load_imagenet(name, root, cache_dir)
    return load_arrays(name, root, test_fraction=test_fraction, cache_dir=cache_dir, class_order=class_order)


__all__ = ["ArrayDataset", "DataError", "FILE_DATASETS", "FileDataset", "load_dataset", "train_size", "EpochSampler",
           "derive_seed"]
