"""The online-KD family's plan (docs/semantics.md §5.1-5.2): how many teacher and student steps, replay events
and never-distilled batches a run of no, online, spaced or offline KD takes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

OFFLINE_RATE = 50.0
"""The reference switches to offline KD (teacher trained first) at -interval_rate >= 50."""


@dataclass(frozen=True)
class OnlineKDPlan:
    method: str
    semantics: str
    iters_per_epoch: int
    """L: batches per epoch (the last one may be short)."""
    epochs: int
    rate: float
    mode: str
    """no_kd | online | spaced | offline"""
    interval: int
    """I = int(L * rate) iterations between replay events (0 = online, the student steps with the teacher)."""
    total_epochs: int
    teacher_steps: int
    student_steps: int
    replay_events: int
    never_distilled: int
    """Batches the teacher saw that the student never replays (the reference drops the trailing partial interval)."""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def plan_online_kd(method: str, semantics: str, iters_per_epoch: int, epochs: int, rate: float) -> OnlineKDPlan:
    L, total = iters_per_epoch, iters_per_epoch * epochs
    notes: list[str] = []
    if method == "no_kd":
        return OnlineKDPlan(method, semantics, L, epochs, rate, "no_kd", 0, epochs, 0, total, 0, 0, notes)
    if method == "offline_kd" or (method == "spaced_online_kd" and rate >= OFFLINE_RATE):
        if method != "offline_kd":
            notes.append(f"interval {rate} >= {OFFLINE_RATE:g} means offline KD in the reference")
        return OnlineKDPlan(method, semantics, L, epochs, rate, "offline", 0, 2 * epochs, total, total, 0, 0, notes)
    interval = int(L * rate) if method == "spaced_online_kd" else 0
    if method == "spaced_online_kd" and interval == 0:
        notes.append(f"interval {rate} < 1/L = {1 / L:.4g} epochs gives I = 0: this is online KD "
                     "(docs/semantics.md §5.1)")
    if interval == 0:
        return OnlineKDPlan(method, semantics, L, epochs, rate, "online", 0, epochs, total, total, 0, 0, notes)
    events, trailing = divmod(total, interval)
    if semantics == "standard" and trailing:
        notes.append(f"standard semantics replays the trailing {trailing} batches at the end of training")
        events, trailing = events + 1, 0
    elif trailing:
        notes.append(f"the last {trailing} batches are never distilled (docs/semantics.md R4)")
    return OnlineKDPlan(method, semantics, L, epochs, rate, "spaced", interval, epochs, total, total - trailing,
                        events, trailing, notes)


def _decimal_bytes(value: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value:.0f} B"


def replay_memory_note(interval: int, batch_size: int, side: int) -> str:
    """The replay buffer at its peak (I full batches): the reference's host float32 copies of every image batch
    plus its int64 labels, against fastkd's int32 indices and one seed per batch (docs/semantics.md §10)."""
    reference = interval * batch_size * (3 * side * side * 4 + 8)
    fastkd = interval * (batch_size * 4 + 8)
    return (f"replay memory at its peak ({interval} batches of {batch_size} at {side}x{side}): reference "
            f"{_decimal_bytes(reference)} of host float32 copies, fastkd {_decimal_bytes(fastkd)} of (indices, seed)")
