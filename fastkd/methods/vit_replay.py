"""The spaced ViT mode's replay and its state (docs/semantics.md §5.4, R21-R23): under `reference` S//L + 1
passes over fresh permutations from an independent loader stream, under `standard` the exact logged batches."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..data.sampler import derive_seed
from ..engine.replay import ReplayLog
from ..engine.steps import StepContext
from ..plans.vit_kd import ViTPlan

REPLAY_STREAM = 0x5BACE
"""Separates the seeds of the reference's independent replay loader from the sampler's (docs/semantics.md R21)."""


class ViTReplay:
    """Mixed into `ViTFamily`, which defines `_student_step` and `_teacher_targets`."""

    plan: ViTPlan
    mode: str
    batch_size: int
    seed: int
    shuffle: bool
    train_size: int
    teacher_params: list[nn.Parameter]
    _student_step: Callable[..., None]
    _teacher_targets: Callable[..., torch.Tensor]

    def _init_replay(self) -> None:
        self.space_counter = 0
        self.replay_passes = 0
        self.replay = ReplayLog()
        self.replay_events = 0
        self.replay_steps = 0

    def _replay_fresh(self, ctx: StepContext) -> None:
        """reference: S//L + 1 passes over fresh permutations of the training set; the pass that reaches S steps
        stops there and every later pass still takes one step; train-mode teacher targets."""
        self.replay_events += 1
        period, L = self.space_counter, self.plan.iters_per_epoch
        taken = 0
        for _ in range(period // L + 1):
            order, pass_index = self._replay_order(self.replay_passes), self.replay_passes
            self.replay_passes += 1
            for j in range(L):
                indices = order[j * self.batch_size:(j + 1) * self.batch_size]
                batch = ctx.batch(indices, derive_seed(self.seed, pass_index, j, REPLAY_STREAM))
                self._student_step(ctx, batch, self._teacher_targets(ctx, batch, train_mode=True),
                                   zero_params=self.teacher_params)
                taken += 1
                if taken >= period:
                    self.space_counter = 0
                    break
        self.replay_steps += taken

    def _replay_order(self, pass_index: int) -> torch.Tensor:
        """The sample order of replay pass `pass_index`: a permutation seeded by (run seed, pass, REPLAY_STREAM)
        (in file order with data.shuffle=false)."""
        if not self.shuffle:
            return torch.arange(self.train_size)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, pass_index, REPLAY_STREAM))
        return torch.randperm(self.train_size, generator=generator)

    def _replay_logged(self, ctx: StepContext) -> None:
        """standard: the exact logged batches, oldest first, against the eval-mode teacher."""
        self.replay_events += 1
        self.space_counter = 0
        with record_function("fastkd.replay"):
            entries = self.replay.drain()
        for indices, seed in entries:
            batch = ctx.batch(indices, seed)
            self._student_step(ctx, batch, self._teacher_targets(ctx, batch, train_mode=False))
        self.replay_steps += len(entries)

    def counters(self) -> dict[str, int]:
        if self.mode != "spaced":
            return {}
        return {"replay_events": self.replay_events, "replay_steps": self.replay_steps}

    def replay_peak_bytes(self) -> int | None:
        return self.replay.peak_nbytes

    def state_dict(self) -> dict[str, Any]:
        return {"space_counter": self.space_counter, "replay_passes": self.replay_passes,
                "replay": self.replay.state_dict(), "replay_events": self.replay_events,
                "replay_steps": self.replay_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("space_counter", "replay_passes", "replay_events", "replay_steps"):
            setattr(self, key, state[key])
        self.replay.load_state_dict(state["replay"])
