"""Synthetic CIFAR-100-layout data for `fastkd bench`: both sides read the same pickles, no download."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .presets import NUM_CLASSES


def write_synthetic_cifar100(root: Path, train_images: int, test_images: int, seed: int = 0) -> Path:
    """CIFAR-100 pickles in torchvision's `cifar-100-python/` layout, filled with smooth random colour fields plus
    noise (so PIL ops and BN statistics see image-like values, not white noise); returns `root`."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train_images), ("test", test_images)):
        chunks = []
        for start in range(0, n, 4096):
            count = min(4096, n - start)
            coarse = torch.from_numpy(rng.integers(0, 256, size=(count, 3, 4, 4)).astype(np.float32))
            smooth = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
            noise = torch.from_numpy(rng.normal(0.0, 12.0, size=(count, 3, 32, 32)).astype(np.float32))
            chunks.append((smooth + noise).round().clamp(0, 255).to(torch.uint8).reshape(count, 3072).numpy())
        labels = rng.integers(0, NUM_CLASSES, size=n).tolist()
        entry = {"filenames": [f"synthetic_{i}.png" for i in range(n)], "batch_label": f"synthetic {split}",
                 "fine_labels": labels, "coarse_labels": [label // 5 for label in labels],
                 "data": np.concatenate(chunks)}
        with open(folder / split, "wb") as fh:
            pickle.dump(entry, fh, protocol=4)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"class_{i}" for i in range(NUM_CLASSES)],
                     "coarse_label_names": [f"superclass_{i}" for i in range(20)]}, fh, protocol=4)
    return root


def write_imagenet_like(root: Path, classes: int, per_class: int, *, val_per_class: int = 0, size=(375, 500),
                        quality: int = 90, seed: int = 0) -> Path:
    """An ImageNet folder layout (`train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG`) of JPEGs at ImageNet's typical size
    (500x375, quality 90: about 100 KB each, like the real files) with smooth colour fields plus noise; returns
    `root`."""
    rng = np.random.default_rng(seed)
    height, width = size
    for split, count in (("train", per_class), ("val", val_per_class)):
        for c in range(classes if count else 0):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                coarse = torch.from_numpy(rng.integers(0, 256, size=(1, 3, 6, 8)).astype(np.float32))
                smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear",
                                                         align_corners=False)[0]
                noise = torch.from_numpy(rng.normal(0.0, 10.0, size=(3, height, width)).astype(np.float32))
                pixels = (smooth + noise).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
                Image.fromarray(pixels).save(folder / f"n{c:08d}_{k}.JPEG", quality=quality)
    return root
