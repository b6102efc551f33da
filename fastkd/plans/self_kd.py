"""The self-KD family's plan (docs/semantics.md §5.3): when the KD events fire and how many full and
deepest-only steps a run takes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

@dataclass(frozen=True)
class SelfKDPlan:
    method: str
    semantics: str
    iters_per_epoch: int
    epochs: int
    rate: float
    """kd.interval s in epochs (0 for `self_kd`)."""
    interval: int
    """I = int(L * rate) iterations between KD events (0 = self KD: the full loss at every iteration)."""
    index_offset: int
    """KD fires at g with (g - offset) % I == 0: offset L under `reference` (its index is n = g - L), else 0."""
    total_epochs: int
    kd_events: int
    first_events: list[int]
    """The first few KD iterations g (1-based)."""
    full_steps: int
    """Optimizer steps with the full multi-exit loss: one per distilled batch."""
    deepest_steps: int
    """Optimizer steps that train only the deepest exit (between KD events)."""
    never_distilled: int
    """Trailing batches after the last KD event that never get the full loss (the reference drops them)."""
    notes: list[str] = field(default_factory=list)

    def is_event(self, g: int) -> bool:
        """Whether iteration g (1-based) is a KD event; Python's floor modulo as the reference relies on."""
        return self.interval == 0 or (g - self.index_offset) % self.interval == 0

    def as_dict(self) -> dict:
        return asdict(self)


def plan_self_kd(method: str, semantics: str, iters_per_epoch: int, epochs: int, rate: float) -> SelfKDPlan:
    """Self KD (`self_kd`: every iteration) or spaced self KD (`spaced_self_kd`: every I = int(L * rate))."""
    L, total = iters_per_epoch, iters_per_epoch * epochs
    notes: list[str] = []
    rate = rate if method == "spaced_self_kd" else 0.0
    interval = int(L * rate)
    if method == "spaced_self_kd" and interval == 0:
        notes.append(f"interval {rate} < 1/L = {1 / L:.4g} epochs gives I = 0: this is self KD at every iteration")
    if interval == 0:
        return SelfKDPlan(method, semantics, L, epochs, rate, 0, 0, epochs, total, list(range(1, min(total, 5) + 1)),
                          total, 0, 0, notes)
    offset = L if semantics == "reference" else 0
    first = (offset - 1) % interval + 1
    events = (total - first) // interval + 1 if first <= total else 0
    last = first + (events - 1) * interval if events else 0
    trailing = total - last
    if semantics == "reference" and first < interval:
        notes.append(f"the reference's index n = g - L fires the first KD event at g = {first}, with only {first} "
                     "batches buffered (docs/semantics.md R6)")
    notes.append(f"{2 * interval - 1} optimizer steps per interval: {interval - 1} deepest-only, {interval} full "
                 "(the deepest exit trains twice on every replayed batch, docs/semantics.md §5.3)")
    full_steps, kd_events = last, events
    if semantics == "standard" and trailing:
        notes.append(f"standard semantics distils the trailing {trailing} batches at the end of training")
        full_steps, kd_events, trailing = total, events + 1, 0
    elif trailing:
        notes.append(f"the last {trailing} batches are never distilled")
    first_events = [first + k * interval for k in range(min(events, 5))]
    return SelfKDPlan(method, semantics, L, epochs, rate, interval, offset, epochs, kd_events, first_events,
                      full_steps, total - events, trailing, notes)
