"""Shared pytest setup: make tests import the fixture modules, keep every test off the internet and out of the
user's data root, and serve synthetic data-set archives from a loopback HTTP server."""

import dataclasses
import hashlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from datasets_on_disk import write_archive  # noqa: E402
from loopback_http import LoopbackServer, closed_port  # noqa: E402


@pytest.fixture(autouse=True)
def _offline_data_sources(monkeypatch):
    """No $FASTKD_DATA from the environment, and every archive URL on a loopback port nothing listens on: a fetch a
    test did not point at its own server fails fast ("cannot reach") instead of reaching the internet."""
    from fastkd.data import fetch

    monkeypatch.delenv("FASTKD_DATA", raising=False)
    port = closed_port()
    for dataset, archive in fetch.ARCHIVES.items():
        monkeypatch.setitem(fetch.ARCHIVES, dataset,
                            dataclasses.replace(archive, url=f"http://127.0.0.1:{port}/{archive.filename}"))


@pytest.fixture(scope="session")
def synthetic_archives(tmp_path_factory) -> dict[str, Path]:
    """Small archives of every fetchable data set in the official formats (datasets_on_disk.write_archive)."""
    folder = tmp_path_factory.mktemp("archives")
    return {dataset: write_archive(dataset, folder) for dataset in ("cifar10", "cifar100", "tiny_imagenet")}


@pytest.fixture
def archive_server(monkeypatch, synthetic_archives):
    """A loopback server holding the synthetic archives, with fastkd's archive table pointed at it (URLs and MD5s)."""
    from fastkd.data import fetch

    with LoopbackServer() as server:
        for dataset, path in synthetic_archives.items():
            server.files[path.name] = path.read_bytes()
            md5 = hashlib.md5(server.files[path.name]).hexdigest()
            monkeypatch.setitem(fetch.ARCHIVES, dataset, fetch.Archive(server.url(path.name), md5))
        yield server
