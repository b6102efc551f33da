"""Bad data folders: `fastkd train` with data.root at a malformed CIFAR / Tiny-ImageNet folder written in the real
on-disk formats (python pickles, JPEG folders). Each is refused at data loading, before any model is built."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from case import BadInput, tiny_config
from datasets_on_disk import damage_cifar, damage_tiny_imagenet, write_malicious_cifar_batch, write_tiny_imagenet

TINY_WNIDS = ["n02", "n01"]


def _train(folder: Path, *overrides: str) -> list[str]:
    return ["train", str(tiny_config(folder)), *overrides]


def _cifar(damage: str) -> Callable[[Path], list[str]]:
    def argv(folder: Path) -> list[str]:
        root = folder / "data"
        dataset = damage_cifar(root, damage)
        return _train(folder, f"data.dataset={dataset}", f"data.root={root}")
    return argv


def _tiny(damage: str | None, *overrides: str) -> Callable[[Path], list[str]]:
    def argv(folder: Path) -> list[str]:
        root = folder / "data"
        write_tiny_imagenet(root, TINY_WNIDS, per_class=2, val_per_class=1)
        base = root / "tiny-imagenet-200"
        if damage == "cache_is_file":
            (base / ".fastkd-cache").write_text("not a folder")
        elif damage == "cache_dir_is_file":
            (folder / "cache").write_text("not a folder")
        elif damage is not None:
            damage_tiny_imagenet(base, damage)
        return _train(folder, "data.dataset=tiny_imagenet", f"data.root={root}",
                      *(o.format(folder=folder) for o in overrides))
    return argv


def _malicious(via: str) -> Callable[[Path], list[str]]:
    def argv(folder: Path) -> list[str]:
        root = folder / "data"
        damage_cifar(root, "missing")  # a valid folder but for the train batch, which becomes the trap
        write_malicious_cifar_batch(root / "cifar-100-python" / "train", folder / "marker", via=via)
        return _train(folder, "data.dataset=cifar100", f"data.root={root}")
    return argv


def _root(kind: str, dataset: str = "cifar100") -> Callable[[Path], list[str]]:
    def argv(folder: Path) -> list[str]:
        root = folder / "data"
        if kind == "file":
            root.write_text("not a folder")
        elif kind == "empty":
            root.mkdir()
        elif kind == "nested_file":
            root.mkdir()
            (root / "cifar-100-python").write_text("not a folder")
        overrides = [f"data.dataset={dataset}"] + ([] if kind == "unset" else [f"data.root={root}"])
        return _train(folder, *overrides)
    return argv


def _fetch(*args: str, setup: str | None = None) -> Callable[[Path], list[str]]:
    """`fastkd data fetch ARGS` in the case folder (`{folder}` in ARGS is replaced by it); archive URLs point at a
    loopback port nothing listens on (tests/conftest.py), so no case reaches the internet."""
    def argv(folder: Path) -> list[str]:
        if setup == "file":
            (folder / "data").write_text("not a folder")
        elif setup == "incomplete":
            (folder / "data" / "cifar-100-python").mkdir(parents=True)
            (folder / "data" / "cifar-100-python" / "train").write_bytes(b"someone's file")
        return ["data", "fetch", *(a.format(folder=folder) for a in args)]
    return argv


CIFAR_CASES = {
    "no-data": r"cifar-100-python/train: has no 'data' entry \(entries: .*\); expected cifar-100-python/",
    "no-labels": r"cifar-100-python/train: has no 'fine_labels' entry",
    "c10-no-labels": r"cifar-10-batches-py/data_batch_3: has no 'labels' entry",
    "float-pixels": r"train: 'data' has dtype float32; expected uint8 pixels 0\.\.255",
    "string-pixels": r"train: 'data' has dtype <U\d+; expected uint8 pixels",
    "pixels-over-255": r"train: 'data'\[0, \d+\] = \d+ is not a pixel value; expected 0\.\.255",
    "image-shaped-data": r"train: 'data' has shape \(4, 3, 32, 32\); expected \(N, 3072\)",
    "no-images": r"train: 'data' has shape \(0, 3072\); expected \(N, 3072\) with N >= 1",
    "ragged-data": r"train: 'data' is a ragged list; expected a uint8 array",
    "float-labels": r"train: 'fine_labels'\[0\] is 0\.0 \(float\); expected 4 integer class indices 0\.\.99",
    "string-labels": r"train: 'fine_labels'\[0\] is 'cat' \(str\); expected 4 integer class indices",
    "float-label-array": r"train: 'fine_labels' is an array of dtype float64 .*; expected 4 integer class indices",
    "negative-label": r"train: 'fine_labels'\[3\] = -1 is outside 0\.\.99 \(100 classes\)",
    "label-past-classes": r"train: 'fine_labels'\[3\] = 100 is outside 0\.\.99 \(100 classes\)",
    "c10-label-10-in-cifar10": r"data_batch_3: 'labels'\[2\] = 10 is outside 0\.\.9 \(10 classes\)",
    "overflowing-label": r"train: 'fine_labels'\[3\] = 1180591620717411303424 is outside 0\.\.99",
    "overflowing-uint64": r"train: 'fine_labels'\[3\] = 18446744073709551615 is outside 0\.\.99",
    "fewer-labels": r"train: 'fine_labels' has 3 labels for 4 images",
    "labels-not-a-list": r"train: 'fine_labels' is a str; expected 4 integer class indices",
    "folder": r"cifar-100-python/train: is a folder, expected a CIFAR pickle file",
    "empty": r"cifar-100-python/train: truncated or not a CIFAR pickle \(empty file\)",
    "truncated": r"cifar-100-python/train: truncated or not a CIFAR pickle \(\w+\)",
    "not-a-dict": r"cifar-100-python/train: holds a list, not a CIFAR batch",
    "symlink-loop": r"cifar-100-python/train: cannot be read \(Too many levels of symbolic links\)",
    "missing": r"cifar-100-python/train: missing; expected cifar-100-python/\{train,test\}",
    "c10-missing": r"data_batch_3: missing; expected cifar-10-batches-py/\{data_batch_1\.\.5,test_batch\}",
}

TINY_CASES = {
    "wnids-missing": r"tiny-imagenet-200/wnids.txt: missing; expected tiny-imagenet-200/ with wnids.txt",
    "wnids-empty": r"wnids.txt: lists no classes; expected one wnid per line",
    "wnids-two-per-line": r"wnids.txt: line 1 \('n02 n01'\) is not one class id",
    "wnids-duplicate": r"wnids.txt: line 3: n02 is listed twice",
    "wnids-binary": r"wnids.txt: not UTF-8 text \(byte 4\)",
    "wnids-folder": r"wnids.txt: is a folder, expected a text file",
    "class-not-listed": r"train/n01: class n01 is not listed in .*wnids.txt",
    "class-without-images": r"train/n05/images: no .JPEG images for class n05 of wnids.txt",
    "no-train": r"tiny-imagenet-200/train: missing; expected tiny-imagenet-200/",
    "annotations-missing": r"val/val_annotations.txt: missing; expected tiny-imagenet-200/",
    "annotations-not-tab-separated": r"val_annotations.txt: line 1 is not '<image>\\t<wnid>\\t\.\.\.'",
    "annotations-unknown-wnid": r"val_annotations.txt: line 2: wnid n99 is not listed in wnids.txt",
    "annotations-empty": r"val_annotations.txt: lists no validation images",
    "annotations-duplicate": r"val_annotations.txt: line 2: image val_0.JPEG is listed twice",
    "val-image-missing": r"val_annotations.txt: line 2: image .*val/images/val_1.JPEG does not exist",
    "train-image-not-jpeg": r"train/n02/images/n02_0.JPEG: cannot be decoded as an image",
    "train-image-truncated": r"train/n02/images/n02_0.JPEG: cannot be decoded as an image \(.*[Tt]runcated",
    "val-image-wrong-size": r"val/images/val_0.JPEG: is 48x32 pixels; Tiny-ImageNet images are 64x64",
}

CASES: list[BadInput] = [
    *(BadInput(f"data-cifar-{name}", "data", _cifar(name.replace("-", "_")), message)
      for name, message in CIFAR_CASES.items()),
    *(BadInput(f"data-tiny-{name}", "data", _tiny(name.replace("-", "_")), message)
      for name, message in TINY_CASES.items()),
    BadInput("data-tiny-cache-path-is-a-file", "data", _tiny("cache_is_file"),
             r"the cache folder .*\.fastkd-cache: is a file, not a folder; remove it or set data.cache_dir"),
    BadInput("data-tiny-cache-dir-setting-is-a-file", "data",
             _tiny("cache_dir_is_file", "data.cache_dir={folder}/cache"),
             r"data.cache_dir .*/cache: is a file, not a folder"),
    BadInput("data-cifar-malicious-pickle-exec", "data", _malicious("exec"),
             r"cifar-100-python/train: refused: the pickle would call builtins\.exec, which no CIFAR data file does"),
    BadInput("data-cifar-malicious-pickle-os-system", "data", _malicious("system"),
             r"cifar-100-python/train: refused: the pickle would call (posix|os)\.system"),
    BadInput("data-root-missing", "data", _root("missing"),
             r"data.root .*/data: no such folder; point data.root at the folder that holds cifar-100-python/.*, or "
             r"download it there with `fastkd data fetch cifar100 --root .*/data` \(or set data.download=true\)"),
    BadInput("data-root-is-a-file", "data", _root("file"), r"data.root .*/data: is a file, not a folder"),
    BadInput("data-root-empty-folder", "data", _root("empty"),
             r"/data: no 'cifar-100-python' folder found; expected cifar-100-python/\{train,test\}.*; download it "
             r"there with `fastkd data fetch cifar100 --root "),
    BadInput("data-root-dataset-folder-is-a-file", "data", _root("nested_file"),
             r"data/cifar-100-python: is a file, not a folder"),
    BadInput("data-fetch-unknown-dataset", "cli", _fetch("digits"),
             r"data fetch: argument DATASET: invalid choice: 'digits' \(choose from 'cifar10', 'cifar100', "
             r"'tiny_imagenet'\)"),
    BadInput("data-fetch-no-dataset", "cli", _fetch(), r"data fetch: the following arguments are required"),
    BadInput("data-fetch-root-without-value", "cli", _fetch("cifar10", "--root"),
             r"argument --root: expected one argument"),
    BadInput("data-fetch-root-is-a-file", "data", _fetch("cifar10", "--root", "{folder}/data", setup="file"),
             r"data.root .*/data: is a file, not a folder; point data.root at a folder to fetch into"),
    BadInput("data-fetch-incomplete-copy-in-the-way", "data",
             _fetch("cifar100", "--root", "{folder}/data", setup="incomplete"),
             r"cifar100: .*/data/cifar-100-python lacks test, so it is not a complete copy; move it away and run "
             r"`fastkd data fetch cifar100 --root .*/data`"),
    BadInput("data-fetch-host-unreachable", "data", _fetch("tiny_imagenet", "--root", "{folder}/data"),
             r"cannot reach 127.0.0.1:\d+ \(Connection refused\); download it by hand from "
             r"http://127.0.0.1:\d+/tiny-imagenet-200.zip \(MD5 [0-9a-f]{32}\), unpack it and point data.root at "
             r"the folder that holds tiny-imagenet-200/", exit_code=1),
    BadInput("data-download-host-unreachable", "data", lambda folder: _train(folder, "data.dataset=cifar10",
                                                                             "data.download=true"),
             r"cannot reach 127.0.0.1:\d+ \(Connection refused\); download it by hand from "
             r"http://127.0.0.1:\d+/cifar-10-python.tar.gz", exit_code=1),
    BadInput("data-root-unset", "data", _root("unset", "cifar10"),
             r"data \(the default data root: data.root and \$FASTKD_DATA are unset\): no such folder; point "
             r"data.root at the folder that holds cifar-10-batches-py/"),
]
