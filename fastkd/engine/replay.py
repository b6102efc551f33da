"""Replay log: the spaced student replays the teacher's batches from (indices, seed), not stored image tensors.

A CIFAR batch costs ~1 KB here instead of the reference's 1.5 MB float32 copy on the host (docs/semantics.md §10).
"""

from __future__ import annotations

import torch


class ReplayLog:
    """FIFO of (sample indices, augmentation seed) pairs; persists across epochs and checkpoints."""

    def __init__(self) -> None:
        self._entries: list[tuple[torch.Tensor, int]] = []
        self._nbytes = 0
        self.peak_nbytes = 0
        """The most bytes the log has held at once (what `fastkd bench` reports as the replay buffer)."""

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, indices: torch.Tensor, seed: int) -> None:
        entry = indices.to(torch.int32).cpu()
        self._entries.append((entry, int(seed)))
        self._nbytes += _entry_nbytes(entry)
        self.peak_nbytes = max(self.peak_nbytes, self._nbytes)

    def drain(self) -> list[tuple[torch.Tensor, int]]:
        """Oldest first; the log is empty afterwards."""
        entries, self._entries, self._nbytes = self._entries, [], 0
        return [(idx.long(), seed) for idx, seed in entries]

    def nbytes(self) -> int:
        return self._nbytes

    def state_dict(self) -> dict:
        return {"indices": [idx for idx, _ in self._entries], "seeds": [seed for _, seed in self._entries]}

    def load_state_dict(self, state: dict) -> None:
        self._entries = list(zip(state["indices"], state["seeds"]))
        self._nbytes = sum(_entry_nbytes(idx) for idx, _ in self._entries)
        self.peak_nbytes = max(self.peak_nbytes, self._nbytes)


def _entry_nbytes(indices: torch.Tensor) -> int:
    """The int32 indices plus an 8-byte seed."""
    return indices.numel() * indices.element_size() + 8
