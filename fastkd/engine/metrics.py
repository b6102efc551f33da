"""Metrics that never force a host sync inside a step: device-side sums read every N steps or at epoch end."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import torch
from torch.profiler import record_function


class DeviceMeter:
    """Running sums of detached scalars on the training device; `read()` is the only host transfer."""

    def __init__(self, device: torch.device):
        self.device = device
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().double()
        if name in self._sums:
            self._sums[name] += value
        else:
            self._sums[name] = value.clone()
        self._counts[name] = self._counts.get(name, 0) + 1

    def read(self) -> dict[str, float]:
        """Means since the last reset (one stacked device->host copy)."""
        if not self._sums:
            return {}
        names = list(self._sums)
        with record_function("fastkd.host_sync"):
            values = torch.stack([self._sums[n] for n in names]).cpu().tolist()
        return {n: v / self._counts[n] for n, v in zip(names, values)}

    def reset(self) -> None:
        self._sums.clear()
        self._counts.clear()


class StepLog:
    """Per-step losses kept on the device and written to `steps.jsonl` in chunks (log_every_step)."""

    def __init__(self, path: Path):
        self.path = path
        self._pending: list[tuple[int, str, dict[str, torch.Tensor]]] = []

    def add(self, step: int, kind: str, losses: dict[str, torch.Tensor]) -> None:
        self._pending.append((step, kind, {k: v.detach().double() for k, v in losses.items()}))

    def flush(self) -> None:
        if not self._pending:
            return
        with record_function("fastkd.host_sync"):
            flat = torch.stack([v for _, _, d in self._pending for v in d.values()]).cpu().tolist()
        with open(self.path, "a") as fh:
            pos = 0
            for step, kind, losses in self._pending:
                row = {"step": step, "kind": kind}
                for name in losses:
                    row[name] = flat[pos]
                    pos += 1
                fh.write(json.dumps(row) + "\n")
        self._pending.clear()


class CsvSummary:
    """One row per epoch in `metrics.csv`; the header is fixed by the first row ever written (timm's summary.csv)."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, row: dict[str, float | int | str | None]) -> None:
        rows: list[dict] = []
        columns = list(row)
        if self.path.exists():
            with open(self.path, newline="") as fh:
                reader = csv.DictReader(fh)
                rows = list(reader)
                columns = list(reader.fieldnames or []) + [k for k in row if k not in (reader.fieldnames or [])]
        if rows and len(columns) > len(rows[0]):
            # A later epoch reports a new column (e.g. offline KD's student phase): rewrite with the wider header.
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
            os.replace(tmp, self.path)
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k)) for k in columns})


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


@torch.no_grad()
def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """Correct counts for each k, as a device tensor."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hits = top.eq(labels[:, None])
    return torch.stack([hits[:, :min(k, kmax)].any(dim=1).sum() for k in ks])
