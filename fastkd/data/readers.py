"""Readers for the on-disk layouts users already have; every split becomes one uint8 NHWC array + int64 labels.

Data files never run code: the CIFAR pickles go through an unpickler that admits only numpy's array
reconstruction, and the Tiny-ImageNet cache is a plain ``.npz`` read with ``allow_pickle=False``. Every malformed
file is refused with one line (a :class:`DataError`) that names it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple

import numpy as np
import torch
from PIL import Image

from ..errors import DataError


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


# Normalisation statistics used by the reference scripts (docs/semantics.md §2.1, §2.2).
CIFAR100_STATS = ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

CIFAR10_LAYOUT = "cifar-10-batches-py/{data_batch_1..5,test_batch} (python pickles, as torchvision writes them)"
CIFAR100_LAYOUT = "cifar-100-python/{train,test} (python pickles, as torchvision writes them)"
TINY_LAYOUT = ("tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
               "val/val_annotations.txt")
REFETCH_HINT = "re-extract it from the official archive"
LATIN1_NAMES = ("latin1", "latin-1", "iso-8859-1", "iso8859-1")

CIFAR_FILES = {"cifar10": ((*(f"data_batch_{i}" for i in range(1, 6)),), ("test_batch",)),
               "cifar100": (("train",), ("test",))}
"""(train, test) files of each CIFAR folder."""
DATASET_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python",
                   "tiny_imagenet": "tiny-imagenet-200"}
"""The folder of each on-disk data set in the data root, as its official archive unpacks."""
DATASET_LAYOUTS = {"cifar10": CIFAR10_LAYOUT, "cifar100": CIFAR100_LAYOUT, "tiny_imagenet": TINY_LAYOUT}
DATASET_MEMBERS = {"cifar10": sum(CIFAR_FILES["cifar10"], ()), "cifar100": sum(CIFAR_FILES["cifar100"], ()),
                   "tiny_imagenet": ("wnids.txt", "train", "val/images", "val/val_annotations.txt")}
"""What a complete copy holds inside its folder: the files and folders the readers open."""

DATA_ENV = "FASTKD_DATA"
"""The environment variable that names the data root when data.root is unset."""
DEFAULT_DATA_ROOT = "data"
"""The data root when neither data.root nor $FASTKD_DATA is set (./data, where the ViT reference reads)."""


class DataRoot(NamedTuple):
    """The folder that holds the data sets, and the setting it came from (for messages)."""

    path: Path
    source: Literal["data.root", "env", "default"]

    def __str__(self) -> str:
        if self.source == "data.root":
            return f"data.root {self.path}"
        if self.source == "env":
            return f"${DATA_ENV} {self.path}"
        return f"{self.path} (the default data root: data.root and ${DATA_ENV} are unset)"

    def fetch_command(self, dataset: str) -> str:
        """The command that downloads `dataset` here."""
        root = "" if self.source == "default" else f" --root {self.path}"
        return f"fastkd data fetch {dataset}{root}"


def data_root(root: str | os.PathLike | None) -> DataRoot:
    """Where data sets are read and fetched: data.root, else $FASTKD_DATA, else ./data; one rule for train, eval,
    compat, reproduce and `fastkd data fetch`."""
    if root is not None:
        return DataRoot(Path(root).expanduser(), "data.root")
    if os.environ.get(DATA_ENV):
        return DataRoot(Path(os.environ[DATA_ENV]).expanduser(), "env")
    return DataRoot(Path(DEFAULT_DATA_ROOT), "default")


def _find(root: str | os.PathLike | None, dataset: str) -> Path:
    """The data set folder: ``<data root>/<folder>``, or the data root itself when it is that folder."""
    where, folder, layout = data_root(root), DATASET_FOLDERS[dataset], DATASET_LAYOUTS[dataset]
    fetch = f"download it there with `{where.fetch_command(dataset)}` (or set data.download=true)"
    base = where.path
    if not base.exists():
        raise DataError(f"{where}: no such folder; point data.root at the folder that holds {layout}, or {fetch}")
    if not base.is_dir():
        raise DataError(f"{where}: is a file, not a folder; point data.root at the folder that holds {layout}")
    nested = base / folder
    if nested.is_dir():
        return nested
    if nested.exists():
        raise DataError(f"{nested}: is a file, not a folder; expected {layout}")
    if base.name == folder:
        return base
    raise DataError(f"{where}: no '{folder}' folder found; expected {layout}; {fetch}")


# ------------------------------------------------------------------------------------------------ CIFAR pickles
class RefusedGlobal(pickle.UnpicklingError):
    """The pickle refers to a callable outside :data:`PICKLE_GLOBALS`, i.e. it would run code."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-0..2 pickles use it for bytes (always 'latin1'); nothing else."""
    if not isinstance(text, str) or not isinstance(encoding, str) or encoding.lower() not in LATIN1_NAMES:
        raise RefusedGlobal(f"_codecs.encode with encoding {str(encoding)[:20]!r}")
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    """``bytes()`` as protocol-0..2 pickles write ``b""`` (a zero-size array's buffer); no arguments allowed."""
    return b""


def _numpy_reconstructors() -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """The functions numpy's own pickles call (array, scalar, protocol-5 array), taken from its reductions: their
    module moved from numpy.core to numpy._core in numpy 2."""
    array = np.zeros(1, np.uint8)
    return array.__reduce__()[0], np.uint8(0).__reduce__()[0], array.__reduce_ex__(5)[0]


_RECONSTRUCT, _SCALAR, _FROMBUFFER = _numpy_reconstructors()
PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,
}
"""Everything a CIFAR pickle may refer to: numpy arrays, dtypes and scalars (written by numpy 1 or 2, any pickle
protocol), and the bytes encoding of Python 3's protocol 0-2 pickles. Dicts, lists, str, bytes and ints need none."""
PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
"""Module names as protocol 0-2 pickles spell them (what ``pickle`` itself maps them to)."""


class _DataUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`PICKLE_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        module = PYTHON2_MODULES.get(module, module)
        try:
            return PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


UNPICKLE_FAILURES = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                     OverflowError, MemoryError, RecursionError)


def _unpickle(path: Path, layout: str) -> dict:
    """The official files are Python 2 pickles (bytes keys when read this way); re-saved ones have str keys."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a CIFAR pickle file; {REFETCH_HINT}")
    try:
        with open(path, "rb") as fh:
            entry = _DataUnpickler(fh, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path}: missing; expected {layout}") from None
    except RefusedGlobal as exc:
        raise DataError(f"{path}: refused: the pickle would call {exc}, which no CIFAR data file does (data "
                        f"files are read without running code); {REFETCH_HINT}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}); check the file and its permissions") from None
    except UNPICKLE_FAILURES as exc:
        reason = "empty file" if path.stat().st_size == 0 else type(exc).__name__
        raise DataError(f"{path}: truncated or not a CIFAR pickle ({reason}); expected {layout}") from None
    if not isinstance(entry, dict):
        raise DataError(f"{path}: holds a {type(entry).__name__}, not a CIFAR batch (a dict with 'data' and "
                        f"labels); expected {layout}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _pixels(path: Path, raw: Any) -> np.ndarray:
    """The 'data' entry as uint8 (N, 3072): integer pixels 0..255 in row-major CHW planes."""
    if isinstance(raw, (list, tuple)):
        try:
            raw = np.asarray(raw)
        except ValueError:
            raise DataError(f"{path}: 'data' is a ragged list; expected a uint8 array of shape (N, 3072)") from None
    if not isinstance(raw, np.ndarray):
        raise DataError(f"{path}: 'data' is a {type(raw).__name__}; expected a uint8 array of shape (N, 3072)")
    if raw.dtype.kind not in "iu":
        raise DataError(f"{path}: 'data' has dtype {raw.dtype}; expected uint8 pixels 0..255, shape (N, 3072)")
    if raw.ndim != 2 or raw.shape[1] != 3072 or raw.shape[0] == 0:
        raise DataError(f"{path}: 'data' has shape {raw.shape}; expected (N, 3072) with N >= 1 "
                        "(N images of 3x32x32 pixels)")
    if raw.dtype != np.uint8:
        outside = np.flatnonzero((raw < 0) | (raw > 255))
        if outside.size:
            row, col = divmod(int(outside[0]), raw.shape[1])
            raise DataError(f"{path}: 'data'[{row}, {col}] = {raw[row, col]} is not a pixel value; expected 0..255")
    return raw.astype(np.uint8, copy=False)


def _class_indices(path: Path, key: str, raw: Any, count: int, num_classes: int) -> np.ndarray:
    """The labels entry as int64 (N,), every value a class index 0..num_classes-1."""
    expected = f"expected {count} integer class indices 0..{num_classes - 1}"
    if isinstance(raw, np.ndarray):
        if raw.ndim != 1 or raw.dtype.kind not in "iu":
            raise DataError(f"{path}: '{key}' is an array of dtype {raw.dtype} and shape {raw.shape}; {expected}")
        values: list[Any] | np.ndarray = raw
    elif isinstance(raw, (list, tuple)):
        for i, value in enumerate(raw):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                shown = repr(value)[:40]
                raise DataError(f"{path}: '{key}'[{i}] is {shown} ({type(value).__name__}); {expected}")
        values = list(raw)
    else:
        raise DataError(f"{path}: '{key}' is a {type(raw).__name__}; {expected}")
    if len(values) != count:
        raise DataError(f"{path}: '{key}' has {len(values)} labels for {count} images; {expected}")
    if isinstance(values, np.ndarray):
        outside = np.flatnonzero((values < 0) | (values >= num_classes))
        first = int(outside[0]) if outside.size else None
    else:  # Python ints of any size, compared before any cast can wrap them
        first = next((i for i, value in enumerate(values) if not 0 <= value < num_classes), None)
    if first is not None:
        raise DataError(f"{path}: '{key}'[{first}] = {values[first]} is outside 0..{num_classes - 1} "
                        f"({num_classes} classes); {REFETCH_HINT}")
    return np.asarray(values, dtype=np.int64)


def _cifar_arrays(files: list[Path], label_key: str, num_classes: int,
                  layout: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for path in files:
        entry = _unpickle(path, layout)
        for key in ("data", label_key):
            if key not in entry:
                found = ", ".join(repr(k) for k in entry) or "none"
                raise DataError(f"{path}: has no '{key}' entry (entries: {found}); expected {layout}")
        data = _pixels(path, entry["data"])
        labels.append(_class_indices(path, label_key, entry[label_key], data.shape[0], num_classes))
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def load_cifar(root: str | None, num_classes: int) -> tuple[ArrayDataset, ArrayDataset]:
    """CIFAR-10/100 from the python-pickle layout (read directly: torchvision would demand the official md5s)."""
    dataset = f"cifar{num_classes}"
    key, stats = ("labels", CIFAR10_STATS) if num_classes == 10 else ("fine_labels", CIFAR100_STATS)
    layout = DATASET_LAYOUTS[dataset]
    base = _find(root, dataset)
    splits = []
    for files in CIFAR_FILES[dataset]:
        x, y = _cifar_arrays([base / f for f in files], key, num_classes, layout)
        splits.append(ArrayDataset(f"cifar{num_classes}", torch.from_numpy(x), torch.from_numpy(y),
                                   num_classes, *stats))
    return splits[0], splits[1]


# ------------------------------------------------------------------------------------------------ Tiny-ImageNet
TINY_SIDE = 64


def _text_lines(path: Path) -> list[str]:
    """The lines of a small UTF-8 text file of the layout, or one line saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: missing; expected {TINY_LAYOUT}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a text file; expected {TINY_LAYOUT}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); {REFETCH_HINT}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}); check the file and its permissions") from None


def _read_wnids(path: Path) -> list[str]:
    """wnids.txt: one class id per line; the line order is the class index."""
    wnids: list[str] = []
    for number, line in enumerate(_text_lines(path), 1):
        wnid = line.strip()
        if not wnid:
            continue
        if any(c.isspace() for c in wnid) or "/" in wnid:
            raise DataError(f"{path}: line {number} ({wnid[:40]!r}) is not one class id; expected one wnid per "
                            "line, e.g. n01443537")
        if wnid in wnids:
            raise DataError(f"{path}: line {number}: {wnid} is listed twice; expected each wnid once")
        wnids.append(wnid)
    if not wnids:
        raise DataError(f"{path}: lists no classes; expected one wnid per line, e.g. n01443537")
    return wnids


def _train_listing(base: Path, index: dict[str, int], listed_in: str | None) -> tuple[list[Path], list[int]]:
    """train/<wnid>/images/*.JPEG sorted by path (the sample order), with every listed class present.

    ``listed_in``: the file that lists the classes (every train folder must be in it), or None when the classes
    are the wnid-named train folders themselves (other folders are skipped, as the ViT reference does)."""
    train = base / "train"
    if not train.is_dir():
        raise DataError(f"{train}: missing; expected {TINY_LAYOUT}")
    for folder in sorted(train.iterdir()):
        if listed_in and folder.is_dir() and folder.name not in index:
            raise DataError(f"{folder}: class {folder.name} is not listed in {base / listed_in}; "
                            f"expected {TINY_LAYOUT}")
    files = [p for p in sorted(train.glob("*/images/*.JPEG")) if p.parts[-3] in index]
    present = {p.parts[-3] for p in files}
    for wnid in index:
        if wnid not in present:
            of = f" of {listed_in}" if listed_in else ""
            raise DataError(f"{train / wnid / 'images'}: no .JPEG images for class {wnid}{of}; "
                            f"expected {TINY_LAYOUT}")
    return files, [index[p.parts[-3]] for p in files]


def _val_listing(base: Path, index: dict[str, int], listed_in: str | None) -> tuple[list[Path], list[int]]:
    """val/val_annotations.txt lines '<image>\t<wnid>\t<box>' over the files in val/images."""
    annotations = base / "val" / "val_annotations.txt"
    lines = _text_lines(annotations)
    images = base / "val" / "images"
    present = {p.name for p in images.iterdir()} if images.is_dir() else set()
    files, labels, seen = [], [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise DataError(f"{annotations}: line {number} is not '<image>\\t<wnid>\\t...' "
                            f"(tab-separated); {REFETCH_HINT}")
        name, wnid = parts[0].strip(), parts[1].strip()
        if wnid not in index:
            where = f"listed in {listed_in}" if listed_in else "one of the train/ class folders"
            raise DataError(f"{annotations}: line {number}: wnid {wnid[:40]} is not {where}; "
                            f"{REFETCH_HINT}")
        if name not in present:
            raise DataError(f"{annotations}: line {number}: image {images / name} does not exist; "
                            f"expected {TINY_LAYOUT}")
        if name in seen:
            raise DataError(f"{annotations}: line {number}: image {name} is listed twice; {REFETCH_HINT}")
        seen.add(name)
        files.append(images / name)
        labels.append(index[wnid])
    if not files:
        raise DataError(f"{annotations}: lists no validation images; expected {TINY_LAYOUT}")
    return files, labels


def _fingerprint(base: Path, wnids: list[str], files: list[Path]) -> str:
    """Content key of the source: class order and every image's relative path, size and modification time."""
    digest = hashlib.sha256("\n".join(wnids).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"\n{path.relative_to(base)}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _decode_tiny(path: Path) -> np.ndarray:
    """One 64x64 image as uint8 RGB (the set has a few grayscale JPEGs); a bad file is named."""
    try:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot be decoded as an image ({exc}); {REFETCH_HINT}") from None
    if pixels.shape != (TINY_SIDE, TINY_SIDE, 3):
        raise DataError(f"{path}: is {pixels.shape[1]}x{pixels.shape[0]} pixels; Tiny-ImageNet images are "
                        f"{TINY_SIDE}x{TINY_SIDE}; {REFETCH_HINT}")
    return pixels


CACHE_ARRAYS = ("key", "train", "val", "train_labels", "val_labels")


def _cached_arrays(cache_file: Path, key: str, train_labels: np.ndarray,
                   val_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | str:
    """(train, val) pixels from the cache, or the reason it cannot be used (it is then rebuilt)."""
    try:
        loaded = np.load(cache_file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return "is not an .npz archive"
        with loaded as z:
            missing = [name for name in CACHE_ARRAYS if name not in z.files]
            if missing:
                return f"lacks the array {missing[0]!r}"
            arrays = {name: z[name] for name in CACHE_ARRAYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        return f"is unreadable ({type(exc).__name__})"
    if arrays["key"].shape != () or str(arrays["key"]) != key:
        return "was built from other images"
    for split, labels in (("train", train_labels), ("val", val_labels)):
        pixels = arrays[split]
        if pixels.dtype != np.uint8 or pixels.shape != (len(labels), TINY_SIDE, TINY_SIDE, 3):
            return f"its {split} array is {pixels.dtype} {pixels.shape}, not uint8 {(len(labels), 64, 64, 3)}"
        if not np.array_equal(arrays[f"{split}_labels"], labels):
            return f"its {split} labels differ from the folder's"
    return arrays["train"], arrays["val"]


def _write_cache(cache_file: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic write (unique temp file + rename), so concurrent runs or a kill never leave half a cache."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, cache_file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _notice(message: str) -> None:
    print(f"fastkd: note: {message}", file=sys.stderr, flush=True)


def _sorted_train_wnids(base: Path) -> list[str]:
    """The ViT reference's class order: the sorted names of the ``train/`` folders that look like wnids
    (``n`` + digits); wnids.txt is not read."""
    train = base / "train"
    if not train.is_dir():
        raise DataError(f"{train}: missing; expected {TINY_LAYOUT}")
    wnids = sorted(p.name for p in train.iterdir() if p.is_dir() and re.fullmatch(r"n\d+", p.name))
    if not wnids:
        raise DataError(f"{train}: holds no class folders named like n01443537; expected {TINY_LAYOUT}")
    return wnids


TinyClassOrder = Literal["wnids_file", "sorted"]
"""Tiny-ImageNet class index: line of wnids.txt (the CNN scripts) or position in the sorted wnids (the ViT code)."""


def load_tiny_imagenet(root: str | None, cache_dir: str | None = None,
                       class_order: TinyClassOrder = "wnids_file") -> tuple[ArrayDataset, ArrayDataset]:
    """Tiny-ImageNet folders, decoded once into a cached uint8 array; ``class_order`` picks the class indices.

    The cache (``.fastkd-cache/`` or ``data.cache_dir``) is keyed by a fingerprint of the images and validated on
    load; a corrupt or stale one is rebuilt, and an unwritable cache folder only costs the decoding next time.
    """
    base = _find(root, "tiny_imagenet")
    wnids = _sorted_train_wnids(base) if class_order == "sorted" else _read_wnids(base / "wnids.txt")
    index = {w: i for i, w in enumerate(wnids)}
    listed_in = None if class_order == "sorted" else "wnids.txt"
    train_files, train_list = _train_listing(base, index, listed_in)
    val_files, val_list = _val_listing(base, index, listed_in)
    train_labels, val_labels = np.asarray(train_list, np.int64), np.asarray(val_list, np.int64)

    key = _fingerprint(base, wnids, train_files + val_files)
    cache = Path(cache_dir).expanduser() if cache_dir else base / ".fastkd-cache"
    setting = "data.cache_dir" if cache_dir else "the cache folder"
    if cache.exists() and not cache.is_dir():
        raise DataError(f"{setting} {cache}: is a file, not a folder; remove it or set data.cache_dir to a folder")
    cache_file = cache / f"tiny-imagenet-{key[:16]}.npz"
    if cache_file.is_dir():
        raise DataError(f"{cache_file}: is a folder where the decoded cache file belongs; remove it")
    cached = _cached_arrays(cache_file, key, train_labels, val_labels) if cache_file.exists() else None
    if isinstance(cached, tuple):
        x_train, x_val = cached
    else:
        if cached is not None:
            _notice(f"{cache_file}: {cached}; rebuilding it from the images")
        x_train = np.stack([_decode_tiny(p) for p in train_files])
        x_val = np.stack([_decode_tiny(p) for p in val_files])
        try:
            _write_cache(cache_file, {"key": np.asarray(key), "train": x_train, "val": x_val,
                                      "train_labels": train_labels, "val_labels": val_labels})
        except OSError as exc:
            _notice(f"cannot write the decoded cache to {cache} ({exc.strerror or exc}); using the images decoded "
                    "in memory (set data.cache_dir to a writable folder to keep them)")
    mean, std = IMAGENET_STATS
    return (
        ArrayDataset("tiny_imagenet", torch.from_numpy(x_train), torch.from_numpy(train_labels), len(wnids), mean,
                     std),
        ArrayDataset("tiny_imagenet", torch.from_numpy(x_val), torch.from_numpy(val_labels), len(wnids), mean, std),
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
                 cache_dir: str | None = None,
                 class_order: TinyClassOrder = "wnids_file") -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) for a configured data set name; ``class_order`` applies to Tiny-ImageNet only."""
    if name == "digits":
        return load_digits(test_fraction)
    if name == "cifar10":
        return load_cifar(root, 10)
    if name == "cifar100":
        return load_cifar(root, 100)
    if name == "tiny_imagenet":
        return load_tiny_imagenet(root, cache_dir, class_order)
    raise DataError(f"unknown data set {name!r}; choose digits, cifar10, cifar100 or tiny_imagenet")
