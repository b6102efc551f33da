"""Ops over the global batch under torchrun: per-sample random draws and min/max taken over all of it, so that N
processes compute what one process computes.

A process holds a block of rows of each global batch (its `Shard`). A model op that draws per-sample randomness is
a `GlobalBatchOp`: the Learner hands it the shard of the batch it is about to run (fastkd.engine.steps.Batch) before
every forward. Without a shard (one process) every op is the plain one.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce

Shard = tuple[slice, int]
"""(this process's rows, rows of the global batch)."""


class GlobalBatchOp(nn.Module):
    """A model op whose draws cover the whole global batch; `shard` is the batch's, set before each forward."""

    shard: Shard | None = None


def global_batch_ops(module: nn.Module) -> list[GlobalBatchOp]:
    return [m for m in module.modules() if isinstance(m, GlobalBatchOp)]


def set_shard(module: nn.Module, shard: Shard | None) -> None:
    """Hand `shard` to every global-batch op of `module` (the Learner does it for the module it runs)."""
    for op in global_batch_ops(module):
        op.shard = shard


def global_rand_like(x: torch.Tensor, dtype: torch.dtype, shard: Shard | None) -> torch.Tensor:
    """`torch.rand_like(x, dtype=dtype)` for this process's rows of a global batch: the values one process would
    have drawn for these samples (every rank draws the whole batch from the shared RNG stream, then slices)."""
    if shard is None or x.dim() == 0 or x.shape[0] != shard[0].stop - shard[0].start:
        return torch.rand_like(x, dtype=dtype)
    rows, total = shard
    memory_format = (torch.channels_last if x.dim() == 4 and not x.is_contiguous()
                     and x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
    full = torch.empty((total, *x.shape[1:]), dtype=dtype, device=x.device, memory_format=memory_format)
    return full.uniform_()[rows]


def draw_for_global_batch(local_rows: int, draw: Callable[[int], torch.Tensor], shard: Shard | None) -> torch.Tensor:
    """`draw(rows)` for this rank's `local_rows` rows of a global batch: every rank makes the whole batch's draw
    `draw(total)` from the shared RNG stream and keeps its rows, so the values are those one process would have
    drawn for these samples (e.g. drop path's per-sample keep mask). Without a shard, or for a tensor of another
    batch size, just `draw(local_rows)`."""
    if shard is None or local_rows != shard[0].stop - shard[0].start:
        return draw(local_rows)
    rows, total = shard
    return draw(total)[rows]


def _several_processes() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def global_aminmax(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) over the whole global batch (MaxDropout normalises by them): an all-reduce across processes."""
    low, high = torch.aminmax(values)
    if not _several_processes():
        return low, high
    both = torch.stack([-low, high])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return -both[0], both[1]


def sum_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over ranks, differentiable (the backward sums the gradients over ranks too)."""
    if not _several_processes():
        return tensor
    with warnings.catch_warnings():  # torch 2.9+ deprecates it for a private replacement; it works as documented
        warnings.simplefilter("ignore", FutureWarning)
        return differentiable_all_reduce(tensor, op=dist.ReduceOp.SUM)


def unsquared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch.dist(a, b) over the global batch: sqrt of the all-reduced sum of squares."""
    if not _several_processes():
        return torch.dist(a, b)
    diff = a - b
    return torch.sqrt(sum_across_ranks((diff * diff).sum()))
