"""`fastkd data fetch` and `data.download` against a loopback HTTP server serving synthetic archives in the official
formats: the unpacked folders are what the readers read; a cut, corrupt, missing or unreachable download fails in
one line that says how to get the data by hand and leaves nothing that looks like data; a second fetch does nothing."""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

import pytest
import torch
from torchvision.datasets import CIFAR10, CIFAR100

from fastkd.cli import main
from fastkd.data import fetch as fetch_module
from fastkd.data import load_dataset
from fastkd.data.fetch import fetch, locate
from fastkd.data.readers import DATASET_FOLDERS, DATASET_MEMBERS

SIZES = {"cifar10": (10, 2), "cifar100": (8, 4), "tiny_imagenet": (4, 2)}
"""(train, test) images in each synthetic archive (tests/datasets_on_disk.py write_archive)."""


def _fetch_cli(capsys, *argv: str) -> tuple[int, str, list[str]]:
    code = main(["data", "fetch", *argv])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def _leftovers(root: Path) -> list[Path]:
    """Anything a fetch leaves in the root besides data set folders and its lock files."""
    return [p for p in root.iterdir() if p.name not in DATASET_FOLDERS.values() and not p.name.endswith(".lock")]


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "tiny_imagenet"])
def test_fetch_unpacks_the_official_layout_that_the_readers_read(archive_server, tmp_path, capsys, dataset):
    root = tmp_path / "data"
    code, out, err = _fetch_cli(capsys, dataset, "--root", str(root))
    folder = root / DATASET_FOLDERS[dataset]
    assert (code, err) == (0, []) and f"{dataset}: fetched into {folder}" in out
    assert "downloading" in out and archive_server.requests == [f"/{fetch_module.ARCHIVES[dataset].filename}"]
    train, test = load_dataset(dataset, str(root))
    assert (len(train), len(test)) == SIZES[dataset] and train.images.dtype == torch.uint8
    assert _leftovers(root) == []
    if dataset == "tiny_imagenet":  # the whole archive is kept, not only what the reader needs
        assert (folder / "words.txt").is_file() and (folder / "test" / "images" / "test_0.JPEG").is_file()


def test_a_second_fetch_finds_the_data_and_downloads_nothing(archive_server, tmp_path, capsys):
    root = tmp_path / "data"
    assert _fetch_cli(capsys, "cifar100", "--root", str(root))[0] == 0
    before = (root / "cifar-100-python" / "train").stat().st_mtime_ns
    code, out, err = _fetch_cli(capsys, "cifar100", "--root", str(root))
    assert (code, err) == (0, []) and f"cifar100: already present in {root / 'cifar-100-python'}" in out
    assert len(archive_server.requests) == 1 and "downloading" not in out
    assert (root / "cifar-100-python" / "train").stat().st_mtime_ns == before


def test_data_root_rule_env_then_dot_data(archive_server, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _fetch_cli(capsys, "cifar10")[0] == 0
    assert locate("cifar10", str(tmp_path / "data")).complete  # unset everywhere: ./data
    monkeypatch.setenv("FASTKD_DATA", str(tmp_path / "env"))
    assert _fetch_cli(capsys, "cifar10")[0] == 0
    assert locate("cifar10").folder == tmp_path / "env" / "cifar-10-batches-py" and locate("cifar10").complete


def _corrupt_md5(server, monkeypatch):
    archive = fetch_module.ARCHIVES["cifar100"]
    monkeypatch.setitem(fetch_module.ARCHIVES, "cifar100", fetch_module.Archive(archive.url, "0" * 32))


def _truncate(server, monkeypatch):
    server.send_only = 1000


def _not_found(server, monkeypatch):
    del server.files["cifar-100-python.tar.gz"]


def _not_an_archive(server, monkeypatch):
    server.files["cifar-100-python.tar.gz"] = b"not a tar.gz, but its MD5 is the one the table expects"
    archive = fetch_module.ARCHIVES["cifar100"]
    md5 = hashlib.md5(server.files["cifar-100-python.tar.gz"]).hexdigest()
    monkeypatch.setitem(fetch_module.ARCHIVES, "cifar100", fetch_module.Archive(archive.url, md5))


@pytest.mark.parametrize("break_it, message", [
    (_corrupt_md5, r"the download's MD5 is [0-9a-f]{32}, not 0{32} \(a corrupt or changed file\); nothing was kept"),
    (_truncate, r"the transfer stopped after 1,000 of [\d,]+ bytes; nothing was kept; run the command again"),
    (_not_found, r"cifar-100-python.tar.gz: the server answered HTTP 404 Not Found"),
    (_not_an_archive, r"cifar-100-python.tar.gz: cannot be unpacked \(.*\); nothing was kept"),
], ids=["checksum-mismatch", "truncated-transfer", "http-404", "not-an-archive"])
def test_a_failed_download_is_one_line_and_leaves_nothing(archive_server, tmp_path, capsys, monkeypatch, break_it,
                                                          message):
    break_it(archive_server, monkeypatch)
    root = tmp_path / "data"
    code, out, err = _fetch_cli(capsys, "cifar100", "--root", str(root))
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("fastkd: error: ") and re.search(message, err[0]), err[0]
    url = fetch_module.ARCHIVES["cifar100"].url
    assert err[0].endswith(f"download it by hand from {url} (MD5 {fetch_module.ARCHIVES['cifar100'].md5}), unpack "
                           "it and point data.root at the folder that holds cifar-100-python/")
    assert not (root / "cifar-100-python").exists() and _leftovers(root) == []


def test_an_unreachable_host_names_the_url_to_download_by_hand(tmp_path, capsys):
    """No archive_server: the autouse fixture points every URL at a loopback port nothing listens on."""
    root = tmp_path / "data"
    code, out, err = _fetch_cli(capsys, "tiny_imagenet", "--root", str(root))
    archive = fetch_module.ARCHIVES["tiny_imagenet"]
    assert code == 1 and len(err) == 1, err
    assert err[0] == (f"fastkd: error: cannot reach {archive.url.split('/')[2]} (Connection refused); download it by "
                      f"hand from {archive.url} (MD5 {archive.md5}), unpack it and point data.root at the folder "
                      "that holds tiny-imagenet-200/")
    assert _leftovers(root) == [] and not (root / "tiny-imagenet-200").exists()


def test_an_interrupted_download_leaves_nothing_that_looks_complete(archive_server, tmp_path, monkeypatch):
    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch_module, "_write", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fetch("cifar100", tmp_path)
    assert not (tmp_path / "cifar-100-python").exists() and _leftovers(tmp_path) == []


def test_a_fetch_killed_earlier_is_cleaned_up_by_the_next(archive_server, tmp_path):
    stale = tmp_path / ".fastkd-fetch-cifar100-abc123"  # what a SIGKILLed fetch leaves
    (stale / "unpacked" / "cifar-100-python").mkdir(parents=True)
    other = tmp_path / ".fastkd-fetch-cifar10-xyz"  # another data set's: not ours to touch
    other.mkdir()
    assert fetch("cifar100", tmp_path) == (tmp_path / "cifar-100-python", True)
    assert not stale.exists() and other.exists()


def test_concurrent_fetches_download_once(archive_server, tmp_path):
    results = []
    threads = [threading.Thread(target=lambda: results.append(fetch("tiny_imagenet", tmp_path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(fetched for _, fetched in results) == [False, False, True]
    assert len(archive_server.requests) == 1 and locate("tiny_imagenet", tmp_path).complete


def test_an_incomplete_copy_in_the_way_is_left_alone(archive_server, tmp_path, capsys):
    (tmp_path / "cifar-100-python").mkdir()
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"someone's file")
    code, out, err = _fetch_cli(capsys, "cifar100", "--root", str(tmp_path))
    assert code == 2 and err == [f"fastkd: error: cifar100: {tmp_path / 'cifar-100-python'} lacks test, so it is "
                                 "not a complete copy; move it away and run "
                                 f"`fastkd data fetch cifar100 --root {tmp_path}`"]
    assert (tmp_path / "cifar-100-python" / "train").read_bytes() == b"someone's file"
    assert archive_server.requests == []


@pytest.mark.parametrize("root, message, exit_code", [
    ("file", r"data.root .*/file: is a file, not a folder; point data.root at a folder to fetch into", 2),
    ("/proc/fastkd-data", r"cannot write into data.root /proc/fastkd-data \(.*\); free some space there or point", 1),
])
def test_a_root_that_cannot_hold_the_data_is_one_line(archive_server, tmp_path, capsys, root, message, exit_code):
    (tmp_path / "file").write_text("not a folder")
    code, out, err = _fetch_cli(capsys, "cifar10", "--root", str(tmp_path / root))
    assert code == exit_code and len(err) == 1 and re.search(message, err[0]), err


def test_train_with_data_download_fetches_then_trains(archive_server, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("name: tiny\nmethod: online_kd\ndata: {dataset: cifar100, download: true, batch_size: 4}\n"
                      "model: {downsample_factor: 1024.0, student_downsample_factor: 1024.0}\n"
                      "train: {epochs: 1, device: cpu, progress: false, tensorboard: false}\n")
    assert main(["train", str(config), "--quiet"]) == 0
    assert locate("cifar100", str(tmp_path / "data")).complete  # the default root ./data
    assert (tmp_path / "runs" / "tiny" / "last.pt").is_file()


def test_the_folders_are_torchvisions():
    """The CIFAR folders and files the readers expect are the ones torchvision's CIFAR10/100 download leaves."""
    for dataset, cls in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        assert DATASET_FOLDERS[dataset] == cls.base_folder
        assert set(DATASET_MEMBERS[dataset]) == {name for name, _ in cls.train_list + cls.test_list}
