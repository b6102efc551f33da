"""Writers for small data sets in the real on-disk layouts (CIFAR pickles, Tiny-ImageNet folders)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Learnable-ish images: a per-image colour gradient plus noise (uint8 NHWC)."""
    base = rng.integers(0, 256, size=(n, 1, 1, 3))
    ramp = np.linspace(0, 60, size, dtype=np.int64)[None, :, None, None]
    noise = rng.integers(0, 40, size=(n, size, size, 3))
    return np.clip(base + ramp + noise, 0, 255).astype(np.uint8)


def _dump(path: Path, entry: dict, bytes_keys: bool) -> None:
    if bytes_keys:  # what Python 2 str keys become when the official files are read with encoding="bytes"
        entry = {k.encode(): v for k, v in entry.items()}
    with open(path, "wb") as fh:
        pickle.dump(entry, fh, protocol=2)


def write_cifar100(root: Path, n_train: int = 40, n_test: int = 20, seed: int = 0, bytes_keys: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        x = _images(rng, n, 32)
        labels = rng.integers(0, 100, size=n).tolist()
        _dump(folder / name, {
            "filenames": [f"img_{i}.png" for i in range(n)], "batch_label": f"{name} batch",
            "fine_labels": labels, "coarse_labels": [lbl // 5 for lbl in labels],
            "data": x.transpose(0, 3, 1, 2).reshape(n, 3072),
        }, bytes_keys)
    _dump(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)],
                            "coarse_label_names": [f"s{i}" for i in range(20)]}, bytes_keys)
    return root


def write_cifar10(root: Path, per_batch: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = _images(rng, per_batch, 32)
        _dump(folder / name, {"batch_label": name, "labels": rng.integers(0, 10, size=per_batch).tolist(),
                              "data": x.transpose(0, 3, 1, 2).reshape(per_batch, 3072),
                              "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}, True)
    _dump(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]}, True)
    return root


def write_tiny_imagenet(root: Path, wnids: list[str], per_class: int = 3, val_per_class: int = 2,
                        seed: int = 0, grayscale_first: bool = True) -> Path:
    """wnids.txt order = class index; train/<wnid>/images/*.JPEG; val/images + val_annotations.txt."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for c, wnid in enumerate(wnids):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(_images(rng, per_class, 64)):
            pil = Image.fromarray(img)
            if grayscale_first and c == 0 and i == 0:
                pil = pil.convert("L")  # the real set has a few grayscale JPEGs
            pil.save(folder / f"{wnid}_{i}.JPEG", quality=95)
        for i, img in enumerate(_images(rng, val_per_class, 64)):
            name = f"val_{c * val_per_class + i}.JPEG"
            Image.fromarray(img).save(base / "val" / "images" / name, quality=95)
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root
