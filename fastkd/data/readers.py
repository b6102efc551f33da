"""Readers for the on-disk layouts users already have; every split becomes one uint8 NHWC array + int64 labels."""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


class DataError(ValueError):
    """A missing or malformed data set; the message is one line naming the expected layout."""


@dataclass
class ArrayDataset:
    """A split held in memory: ``images`` uint8 (N, H, W, 3), ``labels`` int64 (N,)."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


# Normalisation statistics used by the reference scripts (spec 1.1, 1.2).
CIFAR100_STATS = ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

CIFAR10_LAYOUT = "cifar-10-batches-py/{data_batch_1..5,test_batch} (python pickles, as torchvision writes them)"
CIFAR100_LAYOUT = "cifar-100-python/{train,test} (python pickles, as torchvision writes them)"
TINY_LAYOUT = ("tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
               "val/val_annotations.txt")


def _find(root: str | os.PathLike | None, folder: str, layout: str) -> Path:
    if root is None:
        raise DataError(f"data.root is not set; point it at the folder that holds {layout}")
    base = Path(root).expanduser()
    for candidate in (base / folder, base):
        if candidate.name == folder and candidate.is_dir():
            return candidate
    raise DataError(f"{base}: no '{folder}' folder found; expected {layout}")


def _unpickle(path: Path, layout: str) -> dict:
    """The official files are Python 2 pickles (bytes keys when read this way); re-saved ones have str keys."""
    try:
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="bytes")
        return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    except FileNotFoundError:
        raise DataError(f"{path}: missing; expected {layout}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: truncated or not a CIFAR pickle ({type(exc).__name__}); expected {layout}") from None


def _cifar_arrays(files: list[Path], label_key: str, layout: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for path in files:
        entry = _unpickle(path, layout)
        if "data" not in entry or label_key not in entry:
            raise DataError(f"{path}: lacks the 'data'/'{label_key}' entries; expected {layout}")
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != len(entry[label_key]):
            raise DataError(f"{path}: data has shape {data.shape}, expected (N, 3072) with N labels; expected {layout}")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(entry[label_key], dtype=np.int64))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def load_cifar(root: str | None, num_classes: int) -> tuple[ArrayDataset, ArrayDataset]:
    """CIFAR-10/100 from the python-pickle layout (read directly: torchvision would demand the official md5s)."""
    if num_classes == 10:
        folder, layout, key, stats = "cifar-10-batches-py", CIFAR10_LAYOUT, "labels", CIFAR10_STATS
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_files = ["test_batch"]
    else:
        folder, layout, key, stats = "cifar-100-python", CIFAR100_LAYOUT, "fine_labels", CIFAR100_STATS
        train_files, test_files = ["train"], ["test"]
    base = _find(root, folder, layout)
    splits = []
    for files in (train_files, test_files):
        x, y = _cifar_arrays([base / f for f in files], key, layout)
        if y.min() < 0 or y.max() >= num_classes:
            raise DataError(f"{base}: labels outside 0..{num_classes - 1}; expected {layout}")
        splits.append(ArrayDataset(f"cifar{num_classes}", torch.from_numpy(x), torch.from_numpy(y),
                                   num_classes, *stats))
    return splits[0], splits[1]


def _decode_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_tiny_imagenet(root: str | None, cache_dir: str | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """Tiny-ImageNet folders (class index = line of wnids.txt), decoded once into a cached uint8 array."""
    base = _find(root, "tiny-imagenet-200", TINY_LAYOUT)
    wnids_file = base / "wnids.txt"
    if not wnids_file.is_file():
        raise DataError(f"{wnids_file}: missing; expected {TINY_LAYOUT}")
    wnids = [w.strip() for w in wnids_file.read_text().splitlines() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    train_files = sorted((base / "train").glob("*/images/*.JPEG"))
    if not train_files:
        raise DataError(f"{base / 'train'}: no train/<wnid>/images/*.JPEG files; expected {TINY_LAYOUT}")
    annotations = base / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DataError(f"{annotations}: missing; expected {TINY_LAYOUT}")
    val_pairs = []
    for line in annotations.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            val_pairs.append((base / "val" / "images" / parts[0], parts[1]))
    try:
        train_labels = [index[p.parts[-3]] for p in train_files]
        val_labels = [index[w] for _, w in val_pairs]
    except KeyError as exc:
        raise DataError(f"{base}: wnid {exc.args[0]} is not listed in wnids.txt; expected {TINY_LAYOUT}") from None

    listing = "\n".join(str(p) for p in train_files) + "\n" + "\n".join(str(p) for p, _ in val_pairs)
    key = hashlib.sha1(listing.encode()).hexdigest()[:16]
    cache = Path(cache_dir).expanduser() if cache_dir else base / ".fastkd-cache"
    cache_file = cache / f"tiny-imagenet-{key}.npz"
    if cache_file.is_file():
        with np.load(cache_file) as z:
            x_train, x_val = z["train"], z["val"]
    else:
        try:
            x_train = np.stack([_decode_rgb(p) for p in train_files])
            x_val = np.stack([_decode_rgb(p) for p, _ in val_pairs])
        except (OSError, ValueError) as exc:
            raise DataError(f"{base}: an image could not be decoded as 64x64 RGB ({exc}); expected {TINY_LAYOUT}") from None
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, train=x_train, val=x_val)
        os.replace(tmp, cache_file)
    mean, std = IMAGENET_STATS
    return (
        ArrayDataset("tiny_imagenet", torch.from_numpy(x_train), torch.tensor(train_labels), len(wnids), mean, std),
        ArrayDataset("tiny_imagenet", torch.from_numpy(x_val), torch.tensor(val_labels), len(wnids), mean, std),
    )


def load_digits(test_fraction: float = 0.2) -> tuple[ArrayDataset, ArrayDataset]:
    """scikit-learn's bundled 8x8 digits (1797 images, ships offline), upsampled to 32x32 RGB uint8.

    The split is a fixed stratified-by-shuffle permutation (seed 0), so every run sees the same test set.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    gray = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / 16.0)).unsqueeze(1)
    big = torch.nn.functional.interpolate(gray, size=(32, 32), mode="bilinear", align_corners=False)
    images = big.round().clamp(0, 255).to(torch.uint8).squeeze(1).unsqueeze(-1).expand(-1, -1, -1, 3).contiguous()
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_test = int(round(len(labels) * test_fraction))
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    train_x = images[train_idx]
    mean = tuple(float(m) for m in train_x.float().mean(dim=(0, 1, 2)) / 255.0)
    std = tuple(float(s) for s in train_x.float().std(dim=(0, 1, 2)) / 255.0)
    return (
        ArrayDataset("digits", train_x, labels[train_idx], 10, mean, std),
        ArrayDataset("digits", images[test_idx], labels[test_idx], 10, mean, std),
    )


DIGITS_SIZE = 1797
STANDARD_TRAIN_SIZES = {"cifar10": 50000, "cifar100": 50000, "tiny_imagenet": 100000}


def train_size(name: str, test_fraction: float = 0.2) -> int:
    """Training-split size without reading the data (for `fastkd plan`)."""
    if name == "digits":
        return DIGITS_SIZE - int(round(DIGITS_SIZE * test_fraction))
    return STANDARD_TRAIN_SIZES[name]


def load_dataset(name: str, root: str | None = None, *, test_fraction: float = 0.2,
                 cache_dir: str | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) for a configured data set name."""
    if name == "digits":
        return load_digits(test_fraction)
    if name == "cifar10":
        return load_cifar(root, 10)
    if name == "cifar100":
        return load_cifar(root, 100)
    if name == "tiny_imagenet":
        return load_tiny_imagenet(root, cache_dir)
    raise DataError(f"unknown data set {name!r}; choose digits, cifar10, cifar100 or tiny_imagenet")
