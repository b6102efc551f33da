"""ImageNet file indexes (both layouts, class order, the cached index and its invalidation, one-line layout errors)
and `fastkd train` spaced online KD end to end on a generated ImageNet folder with both pipelines."""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest
import torch

from fastkd.config import load_config
from fastkd.data import imagenet
from fastkd.data.imagenet import load_imagenet
from fastkd.engine.trainer import Trainer
from fastkd.errors import DataError
from fastkd.pipelines import available_backends
from imagenet_on_disk import WNIDS, write_imagenet

SORTED = sorted(WNIDS)


@pytest.mark.parametrize("layout", ("folder", "torchvision"))
def test_classes_are_the_sorted_wnids_in_both_layouts(tmp_path, layout):
    root = write_imagenet(tmp_path / "imagenet", layout=layout)
    train, val = load_imagenet("imagenet", str(tmp_path))  # found as <data root>/imagenet
    assert train.classes == SORTED and train.num_classes == 3 and len(train) == 12
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert all(f"/train/{SORTED[label]}/" in path for path, label in zip(train.files, train.labels.tolist()))
    # flat validation images (torchvision's layout) are labelled by meta.bin, in the order they were written
    written = [wnid for wnid in WNIDS for _ in range(2)]
    assert [SORTED[label] for label in val.labels.tolist()] == (sorted(written) if layout == "folder" else written)
    assert all(os.path.isfile(path) and path.startswith(str(root)) for path in val.files)


def test_the_index_is_cached_and_rebuilt_when_a_class_folder_changes(tmp_path, monkeypatch):
    root = write_imagenet(tmp_path, per_class=2)
    first = load_imagenet("imagenet", str(root))[0]
    assert list((root / ".fastkd-cache").glob("index-*.json"))
    scans = []
    monkeypatch.setattr(imagenet, "_scan_split", lambda *a: scans.append(a) or pytest.fail("scanned again"))
    assert load_imagenet("imagenet", str(root))[0].files == first.files  # from the cache: no listing
    monkeypatch.undo()
    folder = root / "train" / SORTED[1]
    shutil.copy(first.files[0], folder / "added.JPEG")
    stat = folder.stat()  # the folder's mtime moves with the new entry (forced: a coarse clock may not have ticked)
    os.utime(folder, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = load_imagenet("imagenet", str(root))[0]
    assert len(second) == len(first) + 1 and str(folder / "added.JPEG") in second.files


def test_an_unwritable_cache_only_costs_the_scan(tmp_path, capsys):
    root = write_imagenet(tmp_path / "data", per_class=1, val_per_class=1)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    train, _ = imagenet.load_imagenet("imagenet", str(root), cache_dir=str(blocker / "cache"))
    assert len(train) == 3 and "cannot write the file index" in capsys.readouterr().err


@pytest.mark.parametrize("damage, message", [
    ("no_root", r"no such folder; point data.root at the folder that holds imagenet/"),
    ("no_train", r"no imagenet/ or ImageNet/ or ILSVRC2012/ folder and no train/ in it; expected train/<wnid>"),
    ("empty_class", r"train/n01443537: class folder without images"),
    ("val_classes_differ", r"val: its class folders differ from train/'s \(n09999999 is in only one of them\)"),
    ("bad_meta", r"meta.bin: not torchvision's ImageNet meta.bin"),
    ("meta_count", r"val: 6 images but meta.bin labels 5"),
])
def test_layout_errors_are_one_line_naming_the_expected_layout(tmp_path, damage, message):
    root = tmp_path / "data"
    if damage != "no_root":
        root.mkdir()
    if damage not in ("no_root", "no_train"):
        write_imagenet(root, per_class=1, layout="torchvision" if damage.endswith("meta") or
                       damage == "meta_count" else "folder")
    if damage == "empty_class":
        for path in (root / "train" / "n01443537").iterdir():
            path.unlink()
    elif damage == "val_classes_differ":
        (root / "val" / "n09999999").mkdir()
    elif damage == "bad_meta":
        (root / "meta.bin").write_bytes(b"not a pickle")
    elif damage == "meta_count":
        wnids, val_wnids = torch.load(root / "meta.bin", weights_only=True)
        torch.save((wnids, val_wnids[:5]), root / "meta.bin")
    with pytest.raises(DataError, match=message) as info:
        load_imagenet("imagenet", str(root))
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", pytest.param("dali", marks=pytest.mark.skipif(
    "dali" not in available_backends(), reason="NVIDIA DALI is not installed"))])
def test_fastkd_train_runs_spaced_online_kd_with_replays_on_an_imagenet_folder(tmp_path, backend):
    root = write_imagenet(tmp_path / "data", per_class=6, layout="torchvision")
    cfg = load_config(None, [
        "name=inet", f"output_dir={tmp_path}", "method=spaced_online_kd", "data.dataset=imagenet", f"data.root={root}",
        f"data.pipeline={backend}", "data.image_size=32", "data.batch_size=4", "data.eval_batch_size=6",
        "data.workers=2", "model.downsample_factor=64", "model.student_downsample_factor=64", "kd.interval=1.5",
        "train.epochs=3", "train.device=cpu", "train.progress=false", "train.tensorboard=false",
    ])
    trainer = Trainer(cfg, tmp_path / "inet", quiet=True)
    assert type(trainer.train_pipe).backend == backend and trainer.plan.interval == 7  # L = 5, I = int(5 * 1.5)
    summary = trainer.fit()
    assert summary["finished"] and summary["replay_events"] == 2  # 15 teacher steps, replays after 7 and 14
    assert json.loads((tmp_path / "inet" / "summary.json").read_text())["replay_events"] == 2
    with open(tmp_path / "inet" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and all(0 <= float(row["eval_student_top1"]) <= 1 for row in rows)
