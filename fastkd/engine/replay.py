"""Replay log: the spaced student replays the teacher's batches from (indices, seed), not stored image tensors.

A CIFAR batch costs ~1 KB here instead of the reference's 1.5 MB float32 copy on the host (spec 10).
"""

from __future__ import annotations

import torch


class ReplayLog:
    """FIFO of (sample indices, augmentation seed) pairs; persists across epochs and checkpoints."""

    def __init__(self) -> None:
        self._entries: list[tuple[torch.Tensor, int]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, indices: torch.Tensor, seed: int) -> None:
        self._entries.append((indices.to(torch.int32).cpu(), int(seed)))

    def drain(self) -> list[tuple[torch.Tensor, int]]:
        """Oldest first; the log is empty afterwards."""
        entries, self._entries = self._entries, []
        return [(idx.long(), seed) for idx, seed in entries]

    def nbytes(self) -> int:
        return sum(idx.numel() * idx.element_size() + 8 for idx, _ in self._entries)

    def state_dict(self) -> dict:
        return {"indices": [idx for idx, _ in self._entries], "seeds": [seed for _, seed in self._entries]}

    def load_state_dict(self, state: dict) -> None:
        self._entries = list(zip(state["indices"], state["seeds"]))
