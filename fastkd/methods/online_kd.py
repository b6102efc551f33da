"""The online-KD family as schedules over the step primitives: no KD, online, spaced online, offline."""

from __future__ import annotations

from typing import Protocol

import torch

from ..engine.replay import ReplayLog
from ..engine.steps import Targets
from .schedule import OnlineKDPlan


class Iteration(Protocol):
    epoch: int
    step: int
    """1-based global training iteration g."""
    indices: torch.Tensor
    seed: int


class StepEngine(Protocol):
    def batch(self, indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]: ...
    def teacher_step(self, x: torch.Tensor, y: torch.Tensor) -> Targets: ...
    def teacher_targets(self, x: torch.Tensor, train_mode: bool) -> Targets: ...
    def student_step(self, x: torch.Tensor, y: torch.Tensor, targets: Targets | None) -> None: ...


class OnlineKDFamily:
    """One class for the four modes; the plan's interval arithmetic decides which events fire.

    Loss weighting (student): (1-alpha)*CE + alpha*soft + beta*feature (spec 3.1); teacher: CE only.
    - no_kd: student CE steps only.
    - online (I = 0): teacher step, then a student step on the same batch against the pre-update teacher outputs.
    - spaced (I > 0): teacher steps; at g % I == 0 the student replays every logged batch, oldest first, against a
      fresh no-grad teacher forward: train-mode BN under `reference` (spec 4.1 step 4), eval mode under `standard`.
    - offline: epochs 0..E-1 teacher only; epochs E..2E-1 student against the eval-mode teacher (spec 4.2).
    """

    def __init__(self, plan: OnlineKDPlan):
        self.plan = plan
        self.replay = ReplayLog()
        self.replay_events = 0
        self.teacher_train_mode_targets = plan.semantics == "reference"

    @property
    def has_teacher(self) -> bool:
        return self.plan.mode != "no_kd"

    def phase(self, epoch: int) -> str:
        """Which models train in this epoch: `teacher`, `student` or `both` (for evaluation and logging)."""
        if self.plan.mode == "no_kd":
            return "student"
        if self.plan.mode == "offline":
            return "teacher" if epoch < self.plan.epochs else "student"
        return "both"

    def run_iteration(self, it: Iteration, eng: StepEngine) -> None:
        mode = self.plan.mode
        x, y = eng.batch(it.indices, it.seed)
        if mode == "no_kd":
            eng.student_step(x, y, None)
        elif mode == "offline":
            if self.phase(it.epoch) == "teacher":
                eng.teacher_step(x, y)
            else:
                eng.student_step(x, y, eng.teacher_targets(x, train_mode=False))
        elif mode == "online":
            targets = eng.teacher_step(x, y)
            eng.student_step(x, y, targets)
        else:
            self.replay.append(it.indices, it.seed)
            eng.teacher_step(x, y)
            if it.step % self.plan.interval == 0:
                self._replay(eng)

    def finish(self, eng: StepEngine) -> None:
        """End of training: `standard` distils the trailing partial interval the reference drops."""
        if self.plan.mode == "spaced" and self.plan.semantics == "standard" and len(self.replay):
            self._replay(eng)

    def _replay(self, eng: StepEngine) -> None:
        self.replay_events += 1
        for indices, seed in self.replay.drain():
            x, y = eng.batch(indices, seed)
            eng.student_step(x, y, eng.teacher_targets(x, train_mode=self.teacher_train_mode_targets))

    def state_dict(self) -> dict:
        return {"replay": self.replay.state_dict(), "replay_events": self.replay_events}

    def load_state_dict(self, state: dict) -> None:
        self.replay.load_state_dict(state["replay"])
        self.replay_events = state["replay_events"]
