"""Ops over the global batch under torchrun: which rows of it this process holds, and per-sample random draws and
min/max taken over all of it, so that N processes compute what one process computes.

The engine notes the rows of the batch a step works on (`set_rows`, fastkd.engine.distributed) before the models
run; the model ops below read them. Outside a sharded batch (one process) every op is the plain one.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist

_current_rows: tuple[slice, int] | None = None
"""(this rank's rows, global rows) of the batch the step in progress works on (None: single process)."""


def set_rows(rows: slice | None, total: int) -> None:
    """Note that the next steps work on rows `rows` of a `total`-row global batch (None: every row, one process)."""
    global _current_rows
    _current_rows = None if rows is None else (rows, total)


def batch_rows() -> tuple[slice, int] | None:
    """(this rank's rows, global rows) of the current batch, for ops that draw per-sample randomness."""
    return _current_rows


def batch_share() -> float | None:
    """B_r / B of the current batch: the weight of this rank's per-sample means in the global loss (None: one
    process, nothing to weight)."""
    if _current_rows is None:
        return None
    rows, total = _current_rows
    return (rows.stop - rows.start) / total


def global_rand_like(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`torch.rand_like(x, dtype=dtype)` for a slice of the current global batch: the rows one process would have
    drawn for these samples (every rank draws the whole batch from the shared RNG stream, then slices)."""
    current = _current_rows
    if current is None or x.dim() == 0 or x.shape[0] != current[0].stop - current[0].start:
        return torch.rand_like(x, dtype=dtype)
    rows, total = current
    memory_format = (torch.channels_last if x.dim() == 4 and not x.is_contiguous()
                     and x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
    full = torch.empty((total, *x.shape[1:]), dtype=dtype, device=x.device, memory_format=memory_format)
    return full.uniform_()[rows]


def draw_for_global_batch(local_rows: int, draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """`draw(rows)` for this rank's `local_rows` rows of the current global batch: every rank makes the whole
    batch's draw `draw(total)` from the shared RNG stream and keeps its rows, so the values are those one process
    would have drawn for these samples (e.g. drop path's per-sample keep mask). Outside a sharded batch, or for a
    tensor of another batch size, just `draw(local_rows)`."""
    current = _current_rows
    if current is None or local_rows != current[0].stop - current[0].start:
        return draw(local_rows)
    rows, total = current
    return draw(total)[rows]


def global_aminmax(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) over the whole global batch (MaxDropout normalises by them)."""
    low, high = torch.aminmax(values)
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return low, high
    both = torch.stack([-low, high])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return -both[0], both[1]
