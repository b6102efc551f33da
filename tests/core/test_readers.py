"""Readers on fixtures written in the real on-disk layouts, and their one-line errors."""

import numpy as np
import pytest
import torch

from datasets_on_disk import write_cifar10, write_cifar100, write_tiny_imagenet
from fastkd.data import DataError, load_dataset
from fastkd.data.readers import CIFAR100_STATS


@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar100_pickles_round_trip(tmp_path, bytes_keys):
    write_cifar100(tmp_path, n_train=12, n_test=5, bytes_keys=bytes_keys)
    train, test = load_dataset("cifar100", str(tmp_path))
    assert train.images.shape == (12, 32, 32, 3) and train.images.dtype == torch.uint8
    assert test.labels.dtype == torch.int64 and len(test) == 5
    assert (train.mean, train.std) == CIFAR100_STATS
    import pickle
    with open(tmp_path / "cifar-100-python" / "train", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    data = raw[b"data" if bytes_keys else "data"]
    # row-major CHW planes -> HWC: pixel (0, 0) of image 3 is (R, G, B) = data[3, 0], data[3, 1024], data[3, 2048]
    assert train.images[3, 0, 0].tolist() == [int(data[3, 0]), int(data[3, 1024]), int(data[3, 2048])]


def test_root_may_be_the_dataset_folder_itself(tmp_path):
    write_cifar100(tmp_path, n_train=4, n_test=2)
    train, _ = load_dataset("cifar100", str(tmp_path / "cifar-100-python"))
    assert len(train) == 4


def test_cifar10_batches(tmp_path):
    write_cifar10(tmp_path, per_batch=3)
    train, test = load_dataset("cifar10", str(tmp_path))
    assert len(train) == 15 and len(test) == 3 and train.num_classes == 10


def test_tiny_imagenet_uses_wnids_order_and_caches(tmp_path):
    wnids = ["n02", "n01", "n03"]  # deliberately unsorted: class index = line number, not sorted order
    write_tiny_imagenet(tmp_path, wnids, per_class=2, val_per_class=1)
    train, val = load_dataset("tiny_imagenet", str(tmp_path))
    assert train.images.shape == (6, 64, 64, 3) and train.num_classes == 3
    assert sorted(val.labels.tolist()) == [0, 1, 2]
    files = sorted((tmp_path / "tiny-imagenet-200" / "train").glob("*/images/*.JPEG"))
    assert train.labels.tolist() == [wnids.index(p.parts[-3]) for p in files]
    cache = list((tmp_path / "tiny-imagenet-200" / ".fastkd-cache").glob("*.npz"))
    assert len(cache) == 1
    again, _ = load_dataset("tiny_imagenet", str(tmp_path))
    assert torch.equal(again.images, train.images)


def test_digits_default_is_32px_rgb_and_fixed_split():
    train, test = load_dataset("digits")
    assert train.images.shape[1:] == (32, 32, 3) and train.num_classes == 10
    assert len(train) + len(test) == 1797
    again, _ = load_dataset("digits")
    assert torch.equal(train.labels, again.labels)
    assert 0 < train.mean[0] < 1 and train.std[0] > 0


@pytest.mark.parametrize("damage, expected", [
    ("missing_root", "no 'cifar-100-python' folder found; expected cifar-100-python/{train,test}"),
    ("missing_file", "test: missing; expected cifar-100-python"),
    ("truncated", "truncated or not a CIFAR pickle"),
    ("bad_shape", "expected (N, 3072)"),
])
def test_cifar_errors_are_one_line(tmp_path, damage, expected):
    root = tmp_path / "data"
    root.mkdir()
    if damage != "missing_root":
        write_cifar100(root, n_train=4, n_test=2)
    folder = root / "cifar-100-python"
    if damage == "missing_file":
        (folder / "test").unlink()
    elif damage == "truncated":
        blob = (folder / "train").read_bytes()
        (folder / "train").write_bytes(blob[: len(blob) // 2])
    elif damage == "bad_shape":
        import pickle
        (folder / "train").write_bytes(pickle.dumps({"data": np.zeros((4, 100), np.uint8), "fine_labels": [0] * 4}))
    with pytest.raises(DataError) as info:
        load_dataset("cifar100", str(root))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_tiny_imagenet_missing_annotations(tmp_path):
    write_tiny_imagenet(tmp_path, ["n01"], per_class=1, val_per_class=1)
    (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataError, match="val_annotations.txt: missing; expected tiny-imagenet-200/"):
        load_dataset("tiny_imagenet", str(tmp_path))


def test_missing_root_setting():
    with pytest.raises(DataError, match="data.root is not set"):
        load_dataset("cifar10", None)
