"""Pieces every reference-style loop shares: the per-epoch result, the step log, buffer accounting."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch


@dataclass
class EpochResult:
    images: int
    iterations: int


@dataclass
class StepLog:
    """The Python floats the reference reads with `.item()` every step (it sends them to wandb); kept only when
    `enabled`, e.g. to compare them with fastkd's steps.jsonl."""

    enabled: bool = False
    rows: list[tuple[str, list[float]]] = field(default_factory=list)

    def add(self, kind: str, values: list[float]) -> None:
        if self.enabled:
            self.rows.append((kind, values))


def tensor_bytes(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """Bytes held by a list of buffered (images, labels) batches."""
    return sum(x.numel() * x.element_size() + y.numel() * y.element_size() for x, y in batches)


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """The reference's cudnn.benchmark setting for the duration of its loop (fastkd may set another one)."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def sgd(params, lr: float, momentum: float, weight_decay: float, nesterov: bool = False) -> torch.optim.SGD:
    """torch.optim.SGD as the reference builds it (no foreach/fused argument: torch picks its default)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
