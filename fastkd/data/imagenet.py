"""ImageNet-1K and ImageNet-100 as file indexes: too large to hold decoded, so a split is (paths, labels) and the
pipelines decode each batch (fastkd.pipelines.jpeg, dali_jpeg).

Two layouts, as users have them: the folder layout ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (what
torchvision's ``ImageFolder`` reads), and torchvision's ``ImageNet`` layout, the same folders plus the devkit's
``meta.bin`` (whose validation labels also serve a flat ``val/*.JPEG``). Class index = position among the sorted
wnids, as torchvision. Listing 1.28 M files takes minutes on a network file system, so the index is cached and
reused while no class folder has changed (a folder's mtime moves when a file in it is added, removed or renamed;
files rewritten in place need no new index, their bytes are read at every batch).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DataError
from .readers import IMAGENET_STATS, data_root

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
"""File names the index takes (case-insensitive); ImageNet's few PNG files are named .JPEG and decode anyway."""
IMAGENET_FOLDERS = {"imagenet": ("imagenet", "ImageNet", "ILSVRC2012"), "imagenet_100": ("imagenet-100",
                                                                                          "ImageNet-100")}
"""Folder names searched in the data root (the first is the one messages suggest)."""
IMAGENET_LAYOUT = ("train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (ImageFolder's layout), optionally with the "
                   "devkit's meta.bin (torchvision's ImageNet layout, which also labels a flat val/*.JPEG)")
INDEX_VERSION = 1


@dataclass
class FileDataset:
    """A split on disk: ``files[i]`` (absolute path) has class ``labels[i]``; ``classes`` are the sorted wnids."""

    name: str
    files: list[str]
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, float, float] = IMAGENET_STATS[0]
    std: tuple[float, float, float] = IMAGENET_STATS[1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.files)


def _notice(message: str) -> None:
    print(f"fastkd: note: {message}", file=sys.stderr, flush=True)


def find_imagenet(root: str | os.PathLike | None, dataset: str) -> Path:
    """The data set folder: the data root itself when it holds ``train/``, else ``<root>/<name>`` for the names
    of :data:`IMAGENET_FOLDERS`."""
    where = data_root(root)
    names = IMAGENET_FOLDERS[dataset]
    if not where.path.is_dir():
        state = "is a file, not a folder" if where.path.exists() else "no such folder"
        raise DataError(f"{where}: {state}; point data.root at the folder that holds {names[0]}/ with "
                        f"{IMAGENET_LAYOUT}")
    if (where.path / "train").is_dir():
        return where.path
    for name in names:
        if (where.path / name).is_dir():
            return where.path / name
    raise DataError(f"{where}: no {' or '.join(n + '/' for n in names)} folder and no train/ in it; expected "
                    f"{IMAGENET_LAYOUT} (ImageNet cannot be downloaded by fastkd: get it from image-net.org)")


def _class_folders(split: Path) -> list[str]:
    if not split.is_dir():
        state = "is a file, not a folder" if split.exists() else "missing"
        raise DataError(f"{split}: {state}; expected {IMAGENET_LAYOUT}")
    return sorted(entry.name for entry in os.scandir(split) if entry.is_dir() and not entry.name.startswith("."))


def _images_in(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder)
                  if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file())


def _read_meta(base: Path) -> tuple[set[str] | None, list[str] | None]:
    """(the devkit's wnids, validation wnids in sorted file order) from meta.bin, or (None, None) without one.
    torchvision writes it with torch.save: a (dict, list) of strings, loaded without running code."""
    meta = base / "meta.bin"
    if not meta.exists():
        return None, None
    try:
        wnid_to_classes, val_wnids = torch.load(meta, weights_only=True)
        wnids = set(wnid_to_classes)
        if not all(isinstance(w, str) for w in [*wnids, *val_wnids]):
            raise TypeError("not strings")
    except Exception as exc:  # noqa: BLE001 - any unreadable meta.bin is the one-line error below
        raise DataError(f"{meta}: not torchvision's ImageNet meta.bin ({type(exc).__name__}); delete it to use the "
                        f"folder layout, or rebuild it with torchvision.datasets.ImageNet") from None
    return wnids, list(val_wnids)


def _scan_split(base: Path, split: str, classes: list[str] | None,
                val_wnids: list[str] | None) -> tuple[list[str], list[str], list[int]]:
    """(classes, paths relative to base, labels) of one split. ``classes`` (the training split's) fixes the class
    index of the validation split; a flat ``val/`` is labelled by meta.bin's ``val_wnids``."""
    folder = base / split
    found = _class_folders(folder)
    if not found and classes is not None and val_wnids is not None:  # torchvision's unsorted val archive
        names = _images_in(folder)
        if len(names) != len(val_wnids):
            raise DataError(f"{folder}: {len(names)} images but meta.bin labels {len(val_wnids)}; expected "
                            f"{IMAGENET_LAYOUT}")
        index = {wnid: i for i, wnid in enumerate(classes)}
        unknown = next((w for w in val_wnids if w not in index), None)
        if unknown is not None:
            raise DataError(f"{base / 'meta.bin'}: validation wnid {unknown} has no train/{unknown}/ folder; "
                            f"expected {IMAGENET_LAYOUT}")
        return classes, [f"{split}/{n}" for n in names], [index[w] for w in val_wnids]
    if not found:
        raise DataError(f"{folder}: no class folders; expected {IMAGENET_LAYOUT}")
    if classes is not None and found != classes:
        extra = sorted(set(found) - set(classes)) or sorted(set(classes) - set(found))
        raise DataError(f"{folder}: its class folders differ from train/'s ({extra[0]} is in only one of them); "
                        f"expected the same wnids in both, {IMAGENET_LAYOUT}")
    files, labels = [], []
    for label, wnid in enumerate(found):
        names = _images_in(folder / wnid)
        if not names:
            raise DataError(f"{folder / wnid}: class folder without images (*.JPEG); add them or remove the folder "
                            f"(expected {IMAGENET_LAYOUT})")
        files += [f"{split}/{wnid}/{n}" for n in names]
        labels += [label] * len(names)
    return found, files, labels


def _index_key(base: Path) -> str:
    """What the cached index depends on: the names and mtimes of the split and class folders and of meta.bin
    (1000 stats, not 1.28 M)."""
    digest = hashlib.sha256(f"v{INDEX_VERSION}".encode())
    for path in (base / "meta.bin", base / "train", base / "val"):
        if path.exists():
            digest.update(f"\n{path.name}\t{path.stat().st_mtime_ns}".encode())
        if path.is_dir():
            for entry in sorted(os.scandir(path), key=lambda e: e.name):
                if entry.is_dir():
                    digest.update(f"\n{path.name}/{entry.name}\t{entry.stat().st_mtime_ns}".encode())
    return digest.hexdigest()


def _load_index(path: Path, key: str) -> dict | None:
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("key") != key:
        return None
    return index


def _write_index(path: Path, index: dict) -> None:
    """Atomic (temp file + rename); a folder that cannot be written only costs the scan next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(index, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError as exc:
        _notice(f"cannot write the file index to {path.parent} ({exc.strerror or exc}); the folders are listed again "
                "next run (set data.cache_dir to a writable folder)")


def build_index(base: Path, cache_dir: str | None = None) -> dict:
    """The index of both splits, from the cache when its key still matches the folders, else scanned and cached."""
    key = _index_key(base)
    cache = Path(cache_dir).expanduser() if cache_dir else base / ".fastkd-cache"
    cache_file = cache / f"index-{hashlib.sha256(str(base.resolve()).encode()).hexdigest()[:12]}.json"
    index = _load_index(cache_file, key) if cache_file.is_file() else None
    if index is not None:
        return index
    meta_wnids, val_wnids = _read_meta(base)
    classes, train_files, train_labels = _scan_split(base, "train", None, None)
    if meta_wnids is not None and not set(classes) <= meta_wnids:
        stray = sorted(set(classes) - meta_wnids)[0]
        raise DataError(f"{base / 'train' / stray}: not a wnid of meta.bin; expected {IMAGENET_LAYOUT}")
    _, val_files, val_labels = _scan_split(base, "val", classes, val_wnids)
    index = {"key": key, "classes": classes, "train": [train_files, train_labels], "val": [val_files, val_labels]}
    _write_index(cache_file, index)
    return index


def load_imagenet(dataset: str, root: str | None, cache_dir: str | None = None) -> tuple[FileDataset, FileDataset]:
    """(train, val) file indexes of ``imagenet`` or ``imagenet_100`` under the data root."""
    base = find_imagenet(root, dataset)
    index = build_index(base, cache_dir)
    splits = []
    for split in ("train", "val"):
        files, labels = index[split]
        splits.append(FileDataset(dataset, [str(base / f) for f in files], torch.tensor(labels, dtype=torch.int64),
                                  index["classes"]))
    return splits[0], splits[1]
