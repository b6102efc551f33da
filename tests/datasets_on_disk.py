"""Writers for small data sets in the real on-disk layouts (CIFAR pickles, Tiny-ImageNet folders), and for
damaged or malicious versions of them."""

from __future__ import annotations

import os
import pickle
import shlex
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Any

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


ARCHIVE_NAMES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz",
                 "tiny_imagenet": "tiny-imagenet-200.zip"}
TINY_ARCHIVE_WNIDS = ["n02", "n01"]


def write_archive(dataset: str, folder: Path) -> Path:
    """A small archive in the official one's format and layout, written to ``folder/<official file name>``:
    CIFAR as gzip'd tar of the pickle folder (with the meta files and extras the real one has), Tiny-ImageNet as
    a zip of its folder tree (words.txt, per-class box files, an unlabelled test split, directory entries)."""
    staging = folder / f"{dataset}-staging"
    if dataset == "cifar100":
        write_cifar100(staging, n_train=8, n_test=4)
        (staging / "cifar-100-python" / "file.txt~").write_text("")
    elif dataset == "cifar10":
        write_cifar10(staging, per_batch=2)
        (staging / "cifar-10-batches-py" / "readme.html").write_text("<html></html>")
    else:
        base = write_tiny_imagenet(staging, TINY_ARCHIVE_WNIDS, per_class=2, val_per_class=1) / "tiny-imagenet-200"
        (base / "words.txt").write_text("".join(f"{w}\tclass {w}\n" for w in TINY_ARCHIVE_WNIDS))
        for wnid in TINY_ARCHIVE_WNIDS:
            (base / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t63\t63\n")
        (base / "test" / "images").mkdir(parents=True)
        shutil.copy(base / "val" / "images" / "val_0.JPEG", base / "test" / "images" / "test_0.JPEG")
    archive = folder / ARCHIVE_NAMES[dataset]
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted(staging.rglob("*")):
                zf.write(path, path.relative_to(staging).as_posix() + ("/" if path.is_dir() else ""))
    else:
        top = next(staging.iterdir())
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(top, arcname=top.name)
    shutil.rmtree(staging)
    return archive


def read_cifar_entry(path: Path) -> dict[str, Any]:
    """A batch written by the writers above, with str keys (plain pickle: only for files these helpers wrote)."""
    with open(path, "rb") as fh:
        entry = pickle.load(fh, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


REMOVE = object()
"""Pass as a value to :func:`rewrite_cifar_entry` to drop that entry."""


def rewrite_cifar_entry(path: Path, protocol: int = 2, **changes: Any) -> Path:
    """Re-save a CIFAR batch with entries replaced (``REMOVE`` drops one), keeping its bytes keys."""
    entry = read_cifar_entry(path)
    for key, value in changes.items():
        if value is REMOVE:
            entry.pop(key, None)
        else:
            entry[key] = value
    with open(path, "wb") as fh:
        pickle.dump({k.encode(): v for k, v in entry.items()}, fh, protocol=protocol)
    return path


class _RunsCode:
    """Unpickling this calls ``call(*args)``: what a booby-trapped data file does."""

    def __init__(self, call: Any, args: tuple) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple:
        return self.call, self.args


def write_malicious_cifar_batch(path: Path, marker: Path, via: str = "exec") -> Path:
    """A CIFAR-looking batch whose 'data' entry, when unpickled, creates ``marker`` (via builtins.exec or
    os.system): a plain ``pickle.load`` of it runs code."""
    if via == "exec":
        payload = _RunsCode(exec, (f"open({str(marker)!r}, 'w').write('code ran')",))
    else:
        payload = _RunsCode(os.system, (f"touch {shlex.quote(str(marker))}",))
    with open(path, "wb") as fh:
        pickle.dump({b"batch_label": b"training batch", b"fine_labels": [0], b"data": payload}, fh, protocol=2)
    return path


def damage_cifar(root: Path, damage: str) -> str:
    """CIFAR-100 (CIFAR-10 for the 'c10_' damages) under ``root``, broken as named; returns the data set name."""
    if damage.startswith("c10_"):
        write_cifar10(root, per_batch=3)
        batch = root / "cifar-10-batches-py" / "data_batch_3"
        damage = damage.removeprefix("c10_")
        key, n = "labels", 3
    else:
        write_cifar100(root, n_train=4, n_test=2)
        batch = root / "cifar-100-python" / "train"
        key, n = "fine_labels", 4
    pixels = read_cifar_entry(batch)["data"]
    changes = {
        "no_data": {"data": REMOVE},
        "no_labels": {key: REMOVE},
        "float_pixels": {"data": pixels.astype(np.float32)},
        "string_pixels": {"data": pixels.astype(str)},
        "pixels_over_255": {"data": pixels.astype(np.int64) + 200},
        "image_shaped_data": {"data": pixels.reshape(n, 3, 32, 32)},
        "no_images": {"data": pixels[:0], key: []},
        "ragged_data": {"data": [[0] * 3072, [0] * 10]},
        "float_labels": {key: [0.0] * n},
        "string_labels": {key: ["cat"] * n},
        "float_label_array": {key: np.zeros(n, np.float64)},
        "negative_label": {key: [0] * (n - 1) + [-1]},
        "label_past_classes": {key: [0] * (n - 1) + [100]},
        "label_10_in_cifar10": {key: [0] * (n - 1) + [10]},
        "overflowing_label": {key: [0] * (n - 1) + [2 ** 70]},
        "overflowing_uint64": {key: np.array([0] * (n - 1) + [2 ** 64 - 1], np.uint64)},
        "fewer_labels": {key: [0] * (n - 1)},
        "labels_not_a_list": {key: "0123"},
    }
    if damage in changes:
        rewrite_cifar_entry(batch, **changes[damage])
    elif damage == "folder":
        batch.unlink()
        batch.mkdir()
    elif damage == "empty":
        batch.write_bytes(b"")
    elif damage == "truncated":
        batch.write_bytes(batch.read_bytes()[:300])
    elif damage == "not_a_dict":
        batch.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    elif damage == "symlink_loop":
        batch.unlink()
        batch.symlink_to(batch)
    elif damage == "missing":
        batch.unlink()
    else:
        raise ValueError(f"unknown damage {damage!r}")
    return "cifar10" if key == "labels" else "cifar100"


def damage_tiny_imagenet(base: Path, damage: str) -> None:
    """Break the ``tiny-imagenet-200`` folder ``base`` (as :func:`write_tiny_imagenet` wrote it) as named."""
    from PIL import Image

    val_images = base / "val" / "images"
    annotations = base / "val" / "val_annotations.txt"
    if damage == "wnids_missing":
        (base / "wnids.txt").unlink()
    elif damage == "wnids_empty":
        (base / "wnids.txt").write_text("\n\n")
    elif damage == "wnids_two_per_line":
        (base / "wnids.txt").write_text("n02 n01\n")
    elif damage == "wnids_duplicate":
        (base / "wnids.txt").write_text("n02\nn01\nn02\n")
    elif damage == "wnids_binary":
        (base / "wnids.txt").write_bytes(b"n02\n\xff\xfe\x00n01\n")
    elif damage == "wnids_folder":
        (base / "wnids.txt").unlink()
        (base / "wnids.txt").mkdir()
    elif damage == "class_not_listed":
        (base / "wnids.txt").write_text("n02\n")
    elif damage == "class_without_images":
        (base / "wnids.txt").write_text("n02\nn01\nn05\n")
    elif damage == "no_train":
        shutil.rmtree(base / "train")
    elif damage == "annotations_missing":
        annotations.unlink()
    elif damage == "annotations_not_tab_separated":
        annotations.write_text(annotations.read_text().replace("\t", " "))
    elif damage == "annotations_unknown_wnid":
        annotations.write_text(annotations.read_text().replace("\tn01\t", "\tn99\t"))
    elif damage == "annotations_empty":
        annotations.write_text("")
    elif damage == "annotations_duplicate":
        annotations.write_text(annotations.read_text().splitlines()[0] + "\n" + annotations.read_text())
    elif damage == "val_image_missing":
        (val_images / "val_1.JPEG").unlink()
    elif damage == "train_image_not_jpeg":
        sorted((base / "train").glob("*/images/*.JPEG"))[2].write_bytes(b"not a JPEG")
    elif damage == "train_image_truncated":
        path = sorted((base / "train").glob("*/images/*.JPEG"))[2]
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "val_image_wrong_size":
        Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(val_images / "val_0.JPEG")
    else:
        raise ValueError(f"unknown damage {damage!r}")
