"""The reference scripts' data path (docs/semantics.md §2.1-2.2, §10): a torchvision-style CIFAR-100 dataset that
turns every
sample into a PIL image and runs the per-sample transforms in DataLoader workers (4, not persistent)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from .autoaugment import CIFAR10Policy, Cutout

CIFAR100_MEAN, CIFAR100_STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)

Recipe = Literal["online_kd", "self_kd"]


class CifarPickleDataset(Dataset):
    """`torchvision.datasets.CIFAR100` minus its md5 check (synthetic files would fail it): the same pickles,
    the same uint8 HWC array in memory, the same `__getitem__` (PIL image -> transform)."""

    def __init__(self, root: str | Path, train: bool, transform: Callable):
        with open(Path(root) / "cifar-100-python" / ("train" if train else "test"), "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
        self.data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.targets = list(entry["fine_labels"])
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


def train_transform(recipe: Recipe, augment: bool = True) -> transforms.Compose:
    """online_kd: docs/semantics.md §2.1 (also the dropout and EMA scripts); self_kd: docs/semantics.md §2.2
    (normalised with CIFAR-10
    statistics, as the reference); `augment=False` keeps only ToTensor + Normalize."""
    if recipe not in ("online_kd", "self_kd"):
        raise ValueError(f"unknown reference recipe {recipe!r}; choose online_kd or self_kd")
    normalize = (transforms.Normalize(CIFAR100_MEAN, CIFAR100_STD) if recipe == "online_kd"
                 else transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD))
    if not augment:
        return transforms.Compose([transforms.ToTensor(), normalize])
    if recipe == "online_kd":
        return transforms.Compose([
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.RandomRotation(15),
            transforms.ToTensor(),
            normalize,
        ])
    return transforms.Compose([
        transforms.RandomCrop(32, padding=4, fill=128),
        transforms.RandomHorizontalFlip(),
        CIFAR10Policy(),
        transforms.ToTensor(),
        Cutout(n_holes=1, length=16),
        normalize,
    ])


def train_loader(root: str | Path, recipe: Recipe, batch_size: int, *, augment: bool = True, shuffle: bool = True,
                 num_workers: int = 4, persistent_workers: bool = False) -> DataLoader:
    """The reference's training loader: shuffled, `num_workers` workers re-spawned every epoch (unless
    `persistent_workers`), drop_last off."""
    dataset = CifarPickleDataset(root, train=True, transform=train_transform(recipe, augment))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=False,
                      persistent_workers=persistent_workers and num_workers > 0)
