"""Data sets (uint8 arrays + labels) and the seeded sampler; augmentation lives in fastkd.pipelines."""

from .readers import ArrayDataset, DataError, load_dataset, train_size
from .sampler import EpochSampler, derive_seed

__all__ = ["ArrayDataset", "DataError", "load_dataset", "train_size", "EpochSampler", "derive_seed"]
