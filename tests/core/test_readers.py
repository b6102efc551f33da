"""Readers on fixtures written in the real on-disk layouts, and their one-line errors."""

import pickle
import re
from pathlib import Path

import numpy as np
from PIL import Image
import pytest
import torch

from datasets_on_disk import (damage_cifar, damage_tiny_imagenet, read_cifar_entry, rewrite_cifar_entry,
                              write_cifar10, write_cifar100, write_malicious_cifar_batch, write_tiny_imagenet)
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


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("labels_as", ["list", "array", "numpy_scalars"])
def test_restricted_unpickler_reads_every_protocol_numpy_writes(tmp_path, protocol, labels_as):
    write_cifar100(tmp_path, n_train=6, n_test=3)
    folder = tmp_path / "cifar-100-python"
    for split in ("train", "test"):
        labels = read_cifar_entry(folder / split)["fine_labels"]
        as_written = {"list": labels, "array": np.asarray(labels, dtype=np.int64),
                      "numpy_scalars": [np.int64(v) for v in labels]}[labels_as]
        rewrite_cifar_entry(folder / split, protocol=protocol, fine_labels=as_written)
    written = read_cifar_entry(folder / "train")
    train, _ = load_dataset("cifar100", str(tmp_path))
    assert train.labels.tolist() == [int(v) for v in written["fine_labels"]]
    assert train.images[5, 0, 0].tolist() == [int(written["data"][5, c * 1024]) for c in range(3)]


def test_restricted_unpickler_reads_numpy1_module_names(tmp_path):
    """The official files and numpy-1 pickles name numpy.core.multiarray, which numpy 2 renamed to numpy._core."""
    write_cifar100(tmp_path, n_train=4, n_test=2)
    reference, _ = load_dataset("cifar100", str(tmp_path))
    for split in ("train", "test"):
        path = tmp_path / "cifar-100-python" / split
        blob = path.read_bytes()
        assert b"numpy._core.multiarray\n_reconstruct" in blob  # protocol 2: GLOBAL opcodes are text lines
        path.write_bytes(blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    train, _ = load_dataset("cifar100", str(tmp_path))
    assert torch.equal(train.images, reference.images)


@pytest.mark.parametrize("via, callee", [("exec", "builtins.exec"), ("system", r"(posix|os)\.system")])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, via, callee):
    write_cifar100(tmp_path, n_train=4, n_test=2)
    train = tmp_path / "cifar-100-python" / "train"
    marker = tmp_path / "marker"
    write_malicious_cifar_batch(train, marker, via=via)
    with open(train, "rb") as fh:  # the file is live: a plain pickle.load runs its code
        pickle.load(fh, encoding="bytes")
    assert marker.exists()
    marker.unlink()
    with pytest.raises(DataError, match=rf"^{re.escape(str(train))}: refused: the pickle would call {callee},") \
            as info:
        load_dataset("cifar100", str(tmp_path))
    assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("damage, expected", [
    ("no_data", r"train: has no 'data' entry \(entries: 'filenames', 'batch_label', 'fine_labels', 'coarse_labels'\)"),
    ("no_labels", r"train: has no 'fine_labels' entry"),
    ("c10_no_labels", r"data_batch_3: has no 'labels' entry"),
    ("float_pixels", r"train: 'data' has dtype float32; expected uint8 pixels 0\.\.255"),
    ("string_pixels", r"train: 'data' has dtype <U\d+; expected uint8"),
    ("pixels_over_255", r"train: 'data'\[0, \d+\] = \d+ is not a pixel value; expected 0\.\.255"),
    ("image_shaped_data", r"train: 'data' has shape \(4, 3, 32, 32\); expected \(N, 3072\)"),
    ("no_images", r"train: 'data' has shape \(0, 3072\); expected \(N, 3072\) with N >= 1"),
    ("ragged_data", r"train: 'data' is a ragged list"),
    ("float_labels", r"train: 'fine_labels'\[0\] is 0\.0 \(float\); expected 4 integer class indices 0\.\.99"),
    ("string_labels", r"train: 'fine_labels'\[0\] is 'cat' \(str\)"),
    ("float_label_array", r"train: 'fine_labels' is an array of dtype float64"),
    ("negative_label", r"train: 'fine_labels'\[3\] = -1 is outside 0\.\.99 \(100 classes\)"),
    ("label_past_classes", r"train: 'fine_labels'\[3\] = 100 is outside 0\.\.99"),
    ("c10_label_10_in_cifar10", r"data_batch_3: 'labels'\[2\] = 10 is outside 0\.\.9 \(10 classes\)"),
    ("overflowing_label", r"'fine_labels'\[3\] = 1180591620717411303424 is outside 0\.\.99"),
    ("overflowing_uint64", r"'fine_labels'\[3\] = 18446744073709551615 is outside 0\.\.99"),
    ("fewer_labels", r"train: 'fine_labels' has 3 labels for 4 images"),
    ("labels_not_a_list", r"train: 'fine_labels' is a str"),
    ("folder", r"train: is a folder, expected a CIFAR pickle file"),
    ("empty", r"train: truncated or not a CIFAR pickle \(empty file\)"),
    ("truncated", r"train: truncated or not a CIFAR pickle"),
    ("not_a_dict", r"train: holds a list, not a CIFAR batch"),
    ("symlink_loop", r"train: cannot be read \(Too many levels of symbolic links\)"),
    ("missing", r"train: missing; expected cifar-100-python/\{train,test\}"),
    ("c10_missing", r"data_batch_3: missing; expected cifar-10-batches-py/\{data_batch_1\.\.5,test_batch\}"),
])
def test_cifar_errors_name_the_file_in_one_line(tmp_path, damage, expected):
    damage_cifar(tmp_path, damage)
    dataset = "cifar10" if damage.startswith("c10_") else "cifar100"
    with pytest.raises(DataError, match=expected) as info:
        load_dataset(dataset, str(tmp_path))
    assert str(info.value).startswith(str(tmp_path)) and "\n" not in str(info.value)


@pytest.mark.parametrize("root, expected", [
    ("absent", r"data.root .*absent: no such folder; point data.root at the folder that holds cifar-100-python/"),
    ("a_file", r"data.root .*a_file: is a file, not a folder"),
    ("empty", r"empty: no 'cifar-100-python' folder found; expected cifar-100-python/\{train,test\}"),
    ("nested_file", r"cifar-100-python: is a file, not a folder"),
])
def test_cifar_root_errors(tmp_path, root, expected):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "nested_file").mkdir()
    (tmp_path / "nested_file" / "cifar-100-python").write_text("x")
    with pytest.raises(DataError, match=expected):
        load_dataset("cifar100", str(tmp_path / root))


def test_tiny_imagenet_missing_annotations(tmp_path):
    write_tiny_imagenet(tmp_path, ["n01"], per_class=1, val_per_class=1)
    (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataError, match="val_annotations.txt: missing; expected tiny-imagenet-200/"):
        load_dataset("tiny_imagenet", str(tmp_path))


def test_unset_root_is_fastkd_data_then_dot_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"^data \(the default data root: data.root and \$FASTKD_DATA are unset\): no "
                                        r"such folder; .* or download it there with `fastkd data fetch cifar10`"):
        load_dataset("cifar10", None)
    write_cifar10(tmp_path / "data", per_batch=2)
    assert len(load_dataset("cifar10", None)[0]) == 10
    monkeypatch.setenv("FASTKD_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError, match=r"^\$FASTKD_DATA .*/env: no such folder; .*`fastkd data fetch cifar10 --root "):
        load_dataset("cifar10", None)
    write_cifar10(tmp_path / "env", per_batch=3)
    assert len(load_dataset("cifar10", None)[0]) == 15
    assert len(load_dataset("cifar10", str(tmp_path / "data"))[0]) == 10  # data.root first


def test_bytes_helpers_admit_only_what_pickle_writes_for_bytes(tmp_path):
    """_codecs.encode is admitted for latin1 text only, bytes() with no arguments only."""
    write_cifar100(tmp_path, n_train=4, n_test=2)
    train = tmp_path / "cifar-100-python" / "train"
    for blob, shown in ((b"c_codecs\nencode\n(Vabc\nVrot13\ntR.", "_codecs.encode with encoding 'rot13'"),
                        (b"c__builtin__\nbytes\n(I1000\ntR.", "bytes")):
        train.write_bytes(blob)
        with pytest.raises(DataError, match=rf"train: (refused: the pickle would call {shown}|truncated or not)"):
            load_dataset("cifar100", str(tmp_path))


def _tiny(tmp_path: Path) -> Path:
    write_tiny_imagenet(tmp_path, ["n02", "n01"], per_class=2, val_per_class=1)
    return tmp_path / "tiny-imagenet-200"


def _cache_file(base: Path) -> Path:
    (cache_file,) = (base / ".fastkd-cache").glob("*.npz")
    return cache_file


@pytest.mark.parametrize("damage, reason", [
    ("garbage", r"is unreadable \(\w+\)"),
    ("truncated", r"is unreadable \(\w+\)"),
    ("npy_not_npz", r"is not an \.npz archive"),
    ("missing_array", r"lacks the array 'val_labels'"),
    ("wrong_shape", r"its train array is uint8 \(4, 32, 32, 3\)"),
    ("wrong_dtype", r"its val array is float32"),
    ("other_key", r"was built from other images"),
    ("wrong_labels", r"its train labels differ from the folder's"),
])
def test_tiny_imagenet_corrupt_cache_is_rebuilt_with_a_notice(tmp_path, capsys, damage, reason):
    base = _tiny(tmp_path)
    reference, _ = load_dataset("tiny_imagenet", str(tmp_path))
    cache_file = _cache_file(base)
    with np.load(cache_file) as z:
        arrays = dict(z)
    if damage == "garbage":
        cache_file.write_bytes(b"\x00not a zip archive" * 10)
    elif damage == "truncated":
        cache_file.write_bytes(cache_file.read_bytes()[:2000])
    elif damage == "npy_not_npz":
        with open(cache_file, "wb") as fh:
            np.save(fh, arrays["train"])
    else:
        arrays.update({
            "missing_array": {}, "wrong_shape": {"train": arrays["train"][:, :32, :32]},
            "wrong_dtype": {"val": arrays["val"].astype(np.float32)}, "other_key": {"key": np.asarray("0" * 64)},
            "wrong_labels": {"train_labels": 1 - arrays["train_labels"]},
        }[damage])
        if damage == "missing_array":
            del arrays["val_labels"]
        with open(cache_file, "wb") as fh:
            np.savez(fh, **arrays)
    capsys.readouterr()
    train, val = load_dataset("tiny_imagenet", str(tmp_path))
    (notice,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(rf"fastkd: note: {re.escape(str(cache_file))}: {reason}.*; rebuilding it from the images",
                        notice)
    assert torch.equal(train.images, reference.images) and torch.equal(train.labels, reference.labels)
    load_dataset("tiny_imagenet", str(tmp_path))  # the rebuilt cache is valid: no second notice
    assert capsys.readouterr().err == ""


def test_tiny_imagenet_valid_cache_is_used_and_keyed_by_the_images(tmp_path, monkeypatch):
    base = _tiny(tmp_path)
    reference, _ = load_dataset("tiny_imagenet", str(tmp_path))
    first = _cache_file(base)

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache is valid")

    monkeypatch.setattr("fastkd.data.readers._decode_tiny", no_decoding)
    again, _ = load_dataset("tiny_imagenet", str(tmp_path))
    assert torch.equal(again.images, reference.images)
    monkeypatch.undo()
    image = sorted((base / "train").glob("*/images/*.JPEG"))[1]
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    changed, _ = load_dataset("tiny_imagenet", str(tmp_path))
    assert changed.images[1].sum() == 0 and {p.name for p in (base / ".fastkd-cache").glob("*.npz")} != {first.name}


def test_tiny_imagenet_cache_path_that_is_a_file_is_refused(tmp_path):
    base = _tiny(tmp_path)
    (base / ".fastkd-cache").write_text("not a folder")
    with pytest.raises(DataError, match=r"the cache folder .*\.fastkd-cache: is a file, not a folder; remove it or "
                                        r"set data.cache_dir to a folder"):
        load_dataset("tiny_imagenet", str(tmp_path))
    elsewhere = tmp_path / "cache-file"
    elsewhere.write_text("x")
    with pytest.raises(DataError, match=r"^data.cache_dir .*cache-file: is a file"):
        load_dataset("tiny_imagenet", str(tmp_path), cache_dir=str(elsewhere))


def test_tiny_imagenet_unwritable_cache_dir_decodes_in_memory(tmp_path, capsys, monkeypatch):
    _tiny(tmp_path)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    train, _ = load_dataset("tiny_imagenet", str(tmp_path), cache_dir=str(tmp_path / "ro" / "cache"))
    assert train.images.shape == (4, 64, 64, 3)
    (notice,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"fastkd: note: cannot write the decoded cache to .*ro/cache \(Permission denied\); using "
                        r"the images decoded in memory \(set data.cache_dir to a writable folder to keep them\)",
                        notice)
    assert not (tmp_path / "ro").exists()


@pytest.mark.parametrize("damage, expected", [
    ("wnids_missing", r"wnids.txt: missing; expected tiny-imagenet-200/"),
    ("wnids_empty", r"wnids.txt: lists no classes; expected one wnid per line"),
    ("wnids_two_per_line", r"wnids.txt: line 1 \('n02 n01'\) is not one class id"),
    ("wnids_duplicate", r"wnids.txt: line 3: n02 is listed twice"),
    ("wnids_binary", r"wnids.txt: not UTF-8 text \(byte 4\)"),
    ("wnids_folder", r"wnids.txt: is a folder, expected a text file"),
    ("class_not_listed", r"train/n01: class n01 is not listed in .*wnids.txt"),
    ("class_without_images", r"train/n05/images: no .JPEG images for class n05 of wnids.txt"),
    ("no_train", r"tiny-imagenet-200/train: missing"),
    ("annotations_missing", r"val_annotations.txt: missing; expected tiny-imagenet-200/"),
    ("annotations_not_tab_separated", r"val_annotations.txt: line 1 is not '<image>\\t<wnid>\\t...'"),
    ("annotations_unknown_wnid", r"val_annotations.txt: line 2: wnid n99 is not listed in wnids.txt"),
    ("annotations_empty", r"val_annotations.txt: lists no validation images"),
    ("annotations_duplicate", r"val_annotations.txt: line 2: image val_0.JPEG is listed twice"),
    ("val_image_missing", r"val_annotations.txt: line 2: image .*val/images/val_1.JPEG does not exist"),
    ("train_image_not_jpeg", r"train/n02/images/n02_0.JPEG: cannot be decoded as an image"),
    ("train_image_truncated", r"train/n02/images/n02_0.JPEG: cannot be decoded as an image \(.*[Tt]runcated"),
    ("val_image_wrong_size", r"val/images/val_0.JPEG: is 48x32 pixels; Tiny-ImageNet images are 64x64"),
])
def test_tiny_imagenet_errors_name_the_file_in_one_line(tmp_path, damage, expected):
    base = _tiny(tmp_path)
    damage_tiny_imagenet(base, damage)
    with pytest.raises(DataError, match=expected) as info:
        load_dataset("tiny_imagenet", str(tmp_path))
    assert str(info.value).startswith(str(base)) and "\n" not in str(info.value)
    assert not (base / ".fastkd-cache").exists()
