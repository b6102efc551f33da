"""Triton kernel of the flat EMA update: one launch over one flat buffer, decay read from a device scalar.

Imported lazily by `FlatEMA.update`, so TRITON_INTERPRET is read when the Triton path is first used.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

EMA_BLOCK = 4096


@triton.jit
def _ema_lerp_kernel(average_ptr, source_ptr, weight_ptr, numel, BLOCK: tl.constexpr):
    """average <- average + w * (source - average) with w = 1 - decay loaded from weight_ptr.

    average_ptr / source_ptr: flat buffers of `numel` elements, same dtype; arithmetic in the dtype of the weight
    scalar (fp64 for fp64 buffers, else fp32).
    """
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < numel
    weight = tl.load(weight_ptr)
    average = tl.load(average_ptr + offsets, mask=mask).to(weight.dtype)
    source = tl.load(source_ptr + offsets, mask=mask).to(weight.dtype)
    updated = average + weight * (source - average)
    tl.store(average_ptr + offsets, updated.to(average_ptr.dtype.element_ty), mask=mask)


def ema_lerp_(average: torch.Tensor, source: torch.Tensor, weight: torch.Tensor) -> None:
    """In-place EMA step on flat contiguous buffers; `weight` is the 0-dim device scalar 1 - decay
    (fp64 for fp64 buffers, else fp32)."""
    numel = average.numel()
    _ema_lerp_kernel[(triton.cdiv(numel, EMA_BLOCK),)](average, source, weight, numel, BLOCK=EMA_BLOCK, num_warps=8)
