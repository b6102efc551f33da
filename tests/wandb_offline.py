"""wandb in offline mode for tests (no network, nothing outside the test folder) and a reader of what it logged.

An offline run is one `run-<id>.wandb` file: wandb's record log (a LevelDB-style log of 32 KiB blocks after a
7-byte header, each chunk `crc32 (4) | length (2) | type (1) | data`, records split over chunks as FULL, or FIRST,
MIDDLE..., LAST), each record a `wandb_internal_pb2.Record` protobuf. The reader keeps the run record and the
logged history rows.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BLOCK_SIZE = 32 * 1024
FILE_HEADER = b":W&B"
CHUNK_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def offline_wandb(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Path:
    """Send every wandb file under `folder` and keep wandb offline and quiet; returns WANDB_DIR. wandb reads its
    environment once per process, at its first run, so any earlier test's wandb state is torn down first."""
    import wandb

    wandb.teardown()
    for variable, sub in (("WANDB_DIR", "runs"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"),
                          ("WANDB_DATA_DIR", "data")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(variable, str(folder / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return folder / "runs"


@dataclass
class OfflineRun:
    """What one offline wandb run file holds: its run record and its history rows (wandb's `_` keys left out)."""

    id: str
    project: str
    entity: str
    name: str
    config: dict
    history: list[dict] = field(default_factory=list)


def read_offline_runs(folder: Path) -> list[OfflineRun]:
    """Every offline run under `folder`, oldest first (a resumed run adds a folder with the same id). wandb's
    service process writes the run files after `finish()` returns, so it is shut down first (flushing them); the
    order is the files' last writes, as two runs started within one second share their folder's timestamp."""
    import wandb

    wandb.teardown()
    paths = sorted(folder.rglob("offline-run-*/run-*.wandb"), key=lambda path: path.stat().st_mtime_ns)
    return [_read_run(path) for path in paths]


def _read_run(path: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2

    run: OfflineRun | None = None
    history = []
    for data in _records(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            config = {item.key: json.loads(item.value_json) for item in r.config.update if item.key != "_wandb"}
            run = OfflineRun(r.run_id, r.project, r.entity, r.display_name, config)
        elif kind == "config" and run is not None:
            run.config.update({item.key: json.loads(item.value_json) for item in record.config.update
                               if item.key != "_wandb"})
        elif kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history.append({key: value for key, value in row.items() if not key.startswith("_")})
    assert run is not None, f"{path}: no run record"
    run.history = history
    return run


def _records(data: bytes):
    assert data[:4] == FILE_HEADER, f"not a wandb run file (starts {data[:7]!r})"
    pos, parts = 7, b""
    while pos + CHUNK_HEADER.size <= len(data):
        left_in_block = BLOCK_SIZE - pos % BLOCK_SIZE
        if left_in_block < CHUNK_HEADER.size:  # the block's tail is padding
            pos += left_in_block
            continue
        _, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0:  # zero padding up to the next block
            pos += left_in_block
            continue
        start = pos + CHUNK_HEADER.size
        parts += data[start:start + length]
        pos = start + length
        if kind in (FULL, LAST):
            yield parts
            parts = b""
