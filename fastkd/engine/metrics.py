"""Metrics that never force a host sync inside a step: device-side sums read every N steps or at epoch end."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.profiler import record_function

from . import distributed


class DeviceMeter:
    """Running sums of detached scalars on the training device; `read()` is the only host transfer.

    It also remembers, on the device, the first non-finite loss `watch()` saw (step, which loss, value), so a
    diverging run is caught at the next read without a host sync per step.
    """

    def __init__(self, device: torch.device, skip_nonfinite: bool = False):
        self.device = device
        self.skip_nonfinite = skip_nonfinite
        """Leave non-finite values out of the means (train.nonfinite: skip); they are counted instead."""
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int | torch.Tensor] = {}
        self._watched: list[str] = []
        self._bad_step = torch.full((), -1.0, dtype=torch.float64, device=device)
        self._bad_name = torch.full((), -1.0, dtype=torch.float64, device=device)
        self._bad_value = torch.zeros((), dtype=torch.float64, device=device)
        self._bad_count = torch.zeros((), dtype=torch.float64, device=device)
        self.first_nonfinite: NonFinite | None = None
        """Set by `read()`: the first non-finite watched loss since the run started (or None)."""
        self.nonfinite_count = 0
        """Set by `read()`: how many watched losses were non-finite since the last reset."""

    def add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().double()
        if self.skip_nonfinite:  # a step is skipped on every rank when any rank's share of its loss is not finite
            finite = distributed.on_every_rank(torch.isfinite(value))
            value = torch.where(finite, value, 0.0)
            self._counts[name] = self._counts.get(name, 0) + finite.double()
        else:
            self._counts[name] = self._counts.get(name, 0) + 1
        if name in self._sums:
            self._sums[name] += value
        else:
            self._sums[name] = value.clone()

    def watch(self, step: int, name: str, loss: torch.Tensor) -> None:
        """Note `loss` if it is the first non-finite one (device ops only: no host sync)."""
        if name not in self._watched:
            self._watched.append(name)
        value = loss.detach().double()
        bad = ~(distributed.on_every_rank(torch.isfinite(value)) if self.skip_nonfinite else torch.isfinite(value))
        self._bad_count += bad.double()
        first = bad & (self._bad_step < 0)
        self._bad_step = torch.where(first, float(step), self._bad_step)
        self._bad_name = torch.where(first, float(self._watched.index(name)), self._bad_name)
        self._bad_value = torch.where(first, value, self._bad_value)

    def read(self) -> dict[str, float]:
        """Means since the last reset, and the non-finite watch (one stacked device->host copy)."""
        names = list(self._sums)
        counts = [self._counts[n] for n in names]
        with record_function("fastkd.host_sync"):
            stacked = torch.stack([*(self._sums[n] for n in names),
                                   *(torch.as_tensor(c, dtype=torch.float64, device=self.device) for c in counts),
                                   self._bad_step, self._bad_name, self._bad_value, self._bad_count])
            flat = _sum_over_ranks(stacked, len(names), self.skip_nonfinite).cpu().tolist()
        bad_step, bad_name, bad_value, bad_count = flat[-4:]
        self.nonfinite_count = int(bad_count)
        if bad_step >= 0 and self.first_nonfinite is None:
            self.first_nonfinite = NonFinite(int(bad_step), self._watched[int(bad_name)], bad_value)
        sums, counts = flat[:len(names)], flat[len(names):-4]
        return {n: (v / c if c else float("nan")) for n, v, c in zip(names, sums, counts)}

    def reset(self) -> None:
        self._sums.clear()
        self._counts.clear()
        self._bad_count.zero_()


def _sum_over_ranks(stacked: torch.Tensor, num_sums: int, ranks_agree: bool) -> torch.Tensor:
    """Under torchrun: the loss sums added over ranks (each rank records its share of every global loss), the
    counts kept (every rank counts the same steps), and the first non-finite watch of any rank (earliest step;
    the count of non-finite losses: the same on every rank when `ranks_agree` (train.nonfinite: skip decides per
    global step), else summed)."""
    if not distributed.is_active():
        return stacked
    stacked = stacked.clone()
    distributed.all_reduce_(stacked[:num_sums])
    bad_step, bad_count = stacked[-4], stacked[-1:]
    distributed.all_reduce_(bad_count, "max" if ranks_agree else "sum")
    step_or_inf = torch.where(bad_step < 0, float("inf"), bad_step).reshape(1)
    distributed.all_reduce_(step_or_inf, "min")
    if bool(step_or_inf.isfinite()) and bool(step_or_inf != bad_step):  # another rank saw it first
        stacked[-4:-1] = torch.tensor([float(step_or_inf), 0.0, float("nan")], dtype=stacked.dtype)
    return stacked


@dataclass(frozen=True)
class NonFinite:
    """The first non-finite training loss of a run."""

    step: int
    name: str
    value: float


class StepLog:
    """Per-step losses kept on the device and read to the host in one chunk (train.log_every_step): the rows of
    steps.jsonl, each with the LR its step used, never a host sync per step."""

    def __init__(self) -> None:
        self._pending: list[tuple[int, str, float, dict[str, torch.Tensor]]] = []

    def add(self, step: int, kind: str, lr: float, losses: dict[str, torch.Tensor]) -> None:
        self._pending.append((step, kind, lr, {k: v.detach().double() for k, v in losses.items()}))

    def read(self) -> list[dict[str, int | str | float]]:
        """Every pending step as a row `{step, kind, lr, <loss name>: value}`, in one device->host copy. Every rank
        takes part (the ranks' shares add up to the global losses) and gets the rows."""
        if not self._pending:
            return []
        with record_function("fastkd.host_sync"):
            flat = torch.stack([v for *_, d in self._pending for v in d.values()])
            values = iter(distributed.all_reduce_(flat).cpu().tolist())
        rows = [{"step": step, "kind": kind, "lr": lr, **{name: next(values) for name in losses}}
                for step, kind, lr, losses in self._pending]
        self._pending.clear()
        return rows


@torch.no_grad()
def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """Correct counts for each k, as a device tensor."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hits = top.eq(labels[:, None])
    return torch.stack([hits[:, :min(k, kmax)].any(dim=1).sum() for k in ks])
