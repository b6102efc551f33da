"""`fastkd data fetch` and `data.download: true`: the on-disk data sets, fetched from their official archives.

A fetch downloads into a hidden temporary folder inside the data root (checking the size the server announced and
the archive's MD5 as the bytes arrive), unpacks it there and renames the data set folder into place last, so an
interrupted or corrupt download never leaves a folder that looks complete. Fetches of one data set into one root
(torchrun ranks, concurrent commands) take turns on a lock file; the later ones find the data present. CIFAR's
archive URL and MD5 are torchvision's (`torchvision.datasets.CIFAR10/100`), so the folder is the one
`CIFAR100(root, download=True)` leaves; Tiny-ImageNet comes from the CS231n archive.

Tests point fetches at a loopback server by replacing entries of :data:`ARCHIVES` (pytest's monkeypatch); the
command line has no URL option on purpose.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, TypeVar

from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import extract_archive
from tqdm.auto import tqdm

from ..errors import DataError, DownloadError, OutputError
from .readers import DATASET_FOLDERS, DATASET_MEMBERS, DataRoot, data_root


@dataclass(frozen=True)
class Archive:
    """Where a data set's official archive is, and its MD5."""

    url: str
    md5: str

    @property
    def filename(self) -> str:
        """The archive's file name (its suffix tells `extract_archive` how to unpack it)."""
        return urllib.parse.urlsplit(self.url).path.rsplit("/", 1)[-1]


TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
ARCHIVES: dict[str, Archive] = {
    "cifar10": Archive(CIFAR10.url, CIFAR10.tgz_md5),
    "cifar100": Archive(CIFAR100.url, CIFAR100.tgz_md5),
    "tiny_imagenet": Archive(TINY_IMAGENET_URL, TINY_IMAGENET_MD5),
}
"""The archive of every data set `fastkd data fetch` knows (the keys of readers.DATASET_FOLDERS)."""

TIMEOUT_S = 60.0
"""Seconds a connection or a read may wait before a stalled download is given up."""
CHUNK_BYTES = 1 << 20
TEMP_PREFIX = ".fastkd-fetch-"
"""Names of the lock file and of the temporary folders of a fetch inside the data root."""
T = TypeVar("T")


@dataclass(frozen=True)
class Presence:
    """How much of a data set is in a data root."""

    dataset: str
    root: DataRoot
    folder: Path
    """Where the data set's folder is, or goes."""
    missing: tuple[str, ...]
    """What a complete copy holds inside `folder` that is not there (all of it when the folder is absent)."""

    @property
    def complete(self) -> bool:
        return not self.missing

    def problem(self) -> str:
        """One line: what is missing and how to get it (for an incomplete or absent data set)."""
        if self.folder.exists():
            return (f"{self.dataset}: {self.folder} lacks {', '.join(self.missing)}, so it is not a complete copy; "
                    f"move it away and run `{self.root.fetch_command(self.dataset)}`")
        return (f"{self.dataset}: no {DATASET_FOLDERS[self.dataset]}/ in {self.root}; download it with "
                f"`{self.root.fetch_command(self.dataset)}`")


def locate(dataset: str, root: str | os.PathLike | None = None) -> Presence:
    """Which of `dataset`'s files are in the data root (data.root semantics: None = $FASTKD_DATA, else ./data),
    looking where the readers look: ``<root>/<folder>``, or the root itself when it is a folder named like that
    (a root that does not exist yet is always the parent: the fetch creates the data set folder in it)."""
    where = data_root(root)
    name = DATASET_FOLDERS[dataset]
    itself = where.path.name == name and where.path.is_dir() and not (where.path / name).exists()
    folder = where.path if itself else where.path / name
    missing = tuple(member for member in DATASET_MEMBERS[dataset] if not (folder / member).exists())
    return Presence(dataset, where, folder, missing)


def fetch(dataset: str, root: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Download, verify and unpack `dataset` into the data root unless a complete copy is there.

    Returns the data set's folder and whether it was downloaded now. Raises DownloadError (the host cannot be
    reached, an HTTP error, a cut or corrupt transfer: exit status 1) with the line that says how to get the data
    by hand, OutputError when the root cannot be written, DataError when an incomplete copy is in the way."""
    presence = locate(dataset, root)
    if presence.complete:
        return presence.folder, False
    where = presence.root
    _make_root(where)
    with _lock(where, where.path / f"{TEMP_PREFIX}{dataset}.lock"):
        presence = locate(dataset, root)  # another process may have fetched it while this one waited
        if presence.complete:
            return presence.folder, False
        if presence.folder.exists():
            raise DataError(presence.problem())
        for stale in where.path.glob(f"{TEMP_PREFIX}{dataset}-*"):  # left by a killed fetch (the lock is ours)
            shutil.rmtree(stale, ignore_errors=True)
        scratch = Path(_writing(where, lambda: tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{dataset}-", dir=where.path)))
        try:
            archive = ARCHIVES[dataset]
            by_hand = (f"download it by hand from {archive.url} (MD5 {archive.md5}), unpack it and point data.root "
                       f"at the folder that holds {DATASET_FOLDERS[dataset]}/")
            print(f"fastkd: downloading {dataset} from {archive.url} into {where.path}", flush=True)
            _download(archive, scratch / archive.filename, where, by_hand)
            print(f"fastkd: unpacking {archive.filename}", flush=True)
            unpacked = _unpack(dataset, scratch / archive.filename, scratch / "unpacked", where, by_hand)
            _writing(where, lambda: os.rename(unpacked, presence.folder))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return presence.folder, True


def _make_root(where: DataRoot) -> None:
    if where.path.exists() and not where.path.is_dir():
        raise DataError(f"{where}: is a file, not a folder; point data.root at a folder to fetch into")
    _writing(where, lambda: where.path.mkdir(parents=True, exist_ok=True))


def _writing(where: DataRoot, action: Callable[[], T]) -> T:
    """`action()`, with a file-system failure turned into one line about the data root."""
    try:
        return action()
    except OSError as exc:
        raise OutputError(f"cannot write into {where} ({exc.strerror or exc}); free some space there or point "
                          "data.root (fetch: --root) at a writable folder") from None


@contextmanager
def _lock(where: DataRoot, path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`; a second fetch of the same data set into the same root waits here."""
    handle = _writing(where, lambda: open(path, "a"))
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"fastkd: waiting for another fetch into {where.path} to finish", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(archive: Archive, target: Path, where: DataRoot, by_hand: str) -> None:
    """Stream `archive.url` into `target` with a progress bar, checking the announced size and the MD5."""
    url, host = archive.url, urllib.parse.urlsplit(archive.url).netloc
    digest, received, expected = hashlib.md5(usedforsecurity=False), 0, None
    with _writing(where, lambda: open(target, "wb")) as out:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "fastkd"})
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                expected = response.length
                with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=archive.filename,
                          disable=None, file=sys.stderr) as bar:
                    while chunk := response.read(CHUNK_BYTES):
                        _write(out, chunk, where)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}; {by_hand}") from None
        except urllib.error.URLError as exc:
            reason = getattr(exc.reason, "strerror", None) or exc.reason
            raise DownloadError(f"cannot reach {host} ({reason}); {by_hand}") from None
        except TimeoutError:
            raise DownloadError(f"{url}: no data for {TIMEOUT_S:.0f} s after {received:,} bytes, so the download "
                                f"was given up; nothing was kept; run the command again, or {by_hand}") from None
        except (http.client.HTTPException, OSError) as exc:
            raise DownloadError(f"{url}: the connection broke after {received:,} bytes ({exc}); nothing was kept; "
                                f"run the command again, or {by_hand}") from None
    if expected is not None and received < expected:
        raise DownloadError(f"{url}: the transfer stopped after {received:,} of {expected:,} bytes; nothing was "
                            f"kept; run the command again, or {by_hand}")
    if digest.hexdigest() != archive.md5:
        raise DownloadError(f"{url}: the download's MD5 is {digest.hexdigest()}, not {archive.md5} (a corrupt or "
                            f"changed file); nothing was kept; run the command again, or {by_hand}")


def _write(out: BinaryIO, chunk: bytes, where: DataRoot) -> None:
    _writing(where, lambda: out.write(chunk))


def _unpack(dataset: str, archive_file: Path, into: Path, where: DataRoot, by_hand: str) -> Path:
    """Unpack the verified archive into `into`; returns its data set folder, checked to be complete."""
    try:
        extract_archive(str(archive_file), str(into))
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DownloadError(f"{archive_file.name}: cannot be unpacked ({exc}); nothing was kept; {by_hand}") from None
    except OSError as exc:
        raise OutputError(f"cannot unpack into {where} ({exc.strerror or exc}); free some space there or point "
                          "data.root (fetch: --root) at another folder") from None
    unpacked = locate(dataset, into)
    if not unpacked.complete:
        raise DownloadError(f"{archive_file.name}: holds no complete {DATASET_FOLDERS[dataset]}/ (no "
                            f"{', '.join(unpacked.missing)}); nothing was kept; {by_hand}")
    return unpacked.folder
