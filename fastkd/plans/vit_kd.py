"""The ViT family's plan (docs/semantics.md §5.4): teacher and student steps, replay events and their length for
base, online, offline and spaced KD of the ViT trainer."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError

MODES = {"vit_base": "base", "vit_online_kd": "online", "vit_offline_kd": "offline", "vit_spaced_kd": "spaced"}


@dataclass(frozen=True)
class ViTPlan:
    method: str
    semantics: str
    iters_per_epoch: int
    """L: batches per epoch of the training loader (the reference drops the last partial batch: data.drop_last)."""
    total_epochs: int
    mode: str
    """base | online | offline | spaced"""
    interval: float
    """s, in epochs (spaced only)."""
    teacher_steps_per_replay: int
    """S = ceil(L*s): teacher steps between replay events (0 unless spaced)."""
    replay_steps_per_event: int
    """Student steps per replay event: S, or S+1 under `reference` when L divides S (docs/semantics.md R22)."""
    teacher_steps: int
    student_steps: int
    replay_events: int
    trailing_teacher_steps: int
    """Teacher steps after the last replay event that no replay follows (`standard` replays them at the end)."""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def replay_arithmetic(iters_per_epoch: int, interval: float, semantics: str) -> tuple[int, int]:
    """(S, replay steps per event). The reference replays once its step counter reaches L*s, i.e. after
    S = ceil(L*s) teacher steps, and then runs S//L + 1 loader passes that stop at S steps, except that each
    remaining pass still takes one step: S+1 steps when L divides S."""
    period = math.ceil(iters_per_epoch * interval)
    extra = semantics == "reference" and period % iters_per_epoch == 0
    return period, period + 1 if extra else period


def plan_vit(method: str, semantics: str, iters_per_epoch: int, epochs: int, interval: float) -> ViTPlan:
    mode, L = MODES[method], iters_per_epoch
    total = L * epochs
    notes: list[str] = []
    if mode != "spaced":
        teacher_steps = total if mode == "online" else 0
        if mode == "offline":
            notes.append("the teacher is frozen and loaded from vit.teacher_weights")
        return ViTPlan(method, semantics, L, epochs, mode, interval, 0, 0, teacher_steps, total, 0, 0, notes)
    period, per_event = replay_arithmetic(L, interval, semantics)
    events, trailing = divmod(total, period)
    if semantics == "reference" and events == 0:  # refused, not warned: the run would end with an untrained student
        raise ConfigError(f"vit.interval={interval:g}: the teacher would train S = ceil(L*s) = {period} steps ahead "
                          f"of the first replay, more than the run's {total} steps (L = {L} x {epochs} epochs), so the "
                          f"student would never train; choose vit.interval <= train.epochs ({epochs})")
    if semantics == "reference":
        student_steps = events * per_event
        notes.append("replays draw fresh batches from an independent loader stream, not the teacher's batches "
                     "(docs/semantics.md R21)")
        if per_event > period:
            notes.append(f"L = {L} divides S = {period}: the reference takes S+1 = {per_event} replay steps per "
                         "event (docs/semantics.md R22)")
        if trailing:
            notes.append(f"the last {trailing} teacher steps are followed by no replay")
    else:
        student_steps = total
        notes.append("replays the exact (indices, seed) batches the teacher saw")
        if trailing:
            notes.append(f"standard semantics replays the trailing {trailing} batches at the end of training")
            events, trailing = events + 1, 0
    return ViTPlan(method, semantics, L, epochs, mode, interval, period, per_event, total, student_steps, events,
                   trailing, notes)
