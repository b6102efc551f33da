"""The EMA family's plan and schedule (docs/semantics.md §6): when the spaced EMA update fires, decided on the
host from a step counter and a seeded RNG, and what a run of EMA or spaced EMA does."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field

RANDOM_EMA_FRACTION = 0.4
"""Random EMA intervals are int(0.4 * L * U[0,1)) + 1 iterations (docs/semantics.md §6)."""


class EmaSchedule:
    """Decides on the host, from a step counter and a seeded RNG, when the spaced EMA update fires (docs/semantics.md
    §6).

    Call `step()` once after every optimizer step; it returns True when the EMA should be updated now. The counter
    resets after each update and runs across epochs, like the reference.

    Args:
        interval_iters: fixed interval t >= 0 in optimizer steps (1 = every step; 0 = never, the reference's
            result for 0 < s < 1/L). Mutually exclusive with random_max.
        random_max: random intervals t = int(random_max * U[0, 1)) + 1, redrawn after each update (the reference
            uses RANDOM_EMA_FRACTION * L = 0.4 * L, so t ranges over 1..int(0.4 * L) + 1).
        seed: seed of the host RNG that draws random intervals.
    """

    def __init__(self, interval_iters: int | None, random_max: float | None = None, seed: int = 0):
        if (interval_iters is None) == (random_max is None):
            raise ValueError("give exactly one of interval_iters (fixed spacing) or random_max (random spacing)")
        if interval_iters is not None and interval_iters < 0:
            raise ValueError(f"interval_iters must be >= 0 (0 = never update), got {interval_iters}")
        if random_max is not None and not random_max > 0:
            raise ValueError(f"random_max must be > 0, got {random_max}")
        self.random_max = random_max
        self._rng = random.Random(seed)
        self._counter = 0
        self._interval = interval_iters if interval_iters is not None else self._draw()

    @classmethod
    def from_reference(cls, s: float, L: int, seed: int = 0) -> EmaSchedule:  # noqa: N803 (spec notation)
        """The reference's `-interval s` with L batches per epoch: s == 0 every step, 0 < s <= 500 every int(s*L)
        steps (never when s < 1/L), s > 500 random intervals int(0.4*L*U) + 1."""
        if s < 0 or L < 1:
            raise ValueError(f"need s >= 0 and L >= 1, got s={s}, L={L}")
        if s == 0:
            return cls(interval_iters=1, seed=seed)
        if s <= 500:
            return cls(interval_iters=int(s * L), seed=seed)
        return cls(interval_iters=None, random_max=RANDOM_EMA_FRACTION * L, seed=seed)

    @property
    def interval(self) -> int:
        """Current interval t in optimizer steps (0 = the update never fires)."""
        return self._interval

    def step(self) -> bool:
        self._counter += 1
        if self._counter != self._interval:
            return False
        self._counter = 0
        if self.random_max is not None:
            self._interval = self._draw()
        return True

    def state_dict(self) -> dict:
        return {"counter": self._counter, "interval": self._interval, "rng_state": self._rng.getstate()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._counter = int(state_dict["counter"])
        self._interval = int(state_dict["interval"])
        version, internal, gauss = state_dict["rng_state"]
        self._rng.setstate((version, tuple(internal), gauss))

    def _draw(self) -> int:
        return int(self.random_max * self._rng.random()) + 1


@dataclass(frozen=True)
class EmaPlan:
    method: str
    semantics: str
    iters_per_epoch: int
    epochs: int
    spacing: float
    """s in epochs (the reference's `-interval`; 0 for `ema`): 0 = every step, <= 500 every int(s*L) steps,
    > 500 random."""
    decay: float
    mode: str
    """every_step | fixed | random | never"""
    interval: int
    """Iterations between EMA updates (0 = never; for `random` the first drawn interval is not known here)."""
    max_random_interval: int
    """Random mode: intervals are int(0.4*L*U) + 1, i.e. 1..this value; 0 otherwise."""
    total_epochs: int
    updates: int
    """EMA updates over the run (random mode: the expected number, rounded)."""
    averaged: str
    """What the EMA averages: `parameters` (reference) or `parameters and buffers` (standard)."""
    eval_batchnorm: str
    notes: list[str] = field(default_factory=list)

    def schedule(self, seed: int) -> EmaSchedule:
        """The host-side update schedule this plan describes."""
        if self.mode == "random":
            return EmaSchedule(interval_iters=None, random_max=RANDOM_EMA_FRACTION * self.iters_per_epoch, seed=seed)
        return EmaSchedule(interval_iters=self.interval, seed=seed)

    def as_dict(self) -> dict:
        return asdict(self)


def plan_ema(method: str, semantics: str, iters_per_epoch: int, epochs: int, spacing: float,
             decay: float) -> EmaPlan:
    """`ema`: update after every optimizer step; `spaced_ema`: the reference's `-interval` rule (docs/semantics.md
    §6)."""
    L, total = iters_per_epoch, iters_per_epoch * epochs
    notes: list[str] = []
    s = spacing if method == "spaced_ema" else 0.0
    reference_schedule = EmaSchedule.from_reference(s, L)
    max_random = 0
    if reference_schedule.random_max is not None:
        mode, interval = "random", 0
        bound = RANDOM_EMA_FRACTION * L
        max_random = math.ceil(bound)
        # E[int(m*U)] for U ~ U[0,1): each k < floor(m) with probability 1/m, floor(m) with (m - floor(m))/m.
        whole = math.floor(bound)
        mean = (whole * (whole - 1) / 2 + whole * (bound - whole)) / bound + 1
        updates = round(total / mean)
        notes.append(f"random intervals 1..{max_random} iterations (mean {mean:.1f}), redrawn after each update")
    else:
        interval = reference_schedule.interval
        if interval == 0 and semantics == "standard":
            interval = 1
            notes.append(f"s = {s} < 1/L: the reference never updates (docs/semantics.md R13); "
                         "standard updates every step")
        elif interval == 0:
            notes.append(f"s = {s} < 1/L = {1 / L:.4g} gives int(s*L) = 0: the EMA is never updated "
                         "(docs/semantics.md R13)")
        mode = "never" if interval == 0 else "every_step" if interval == 1 else "fixed"
        updates = total // interval if interval else 0
    if semantics == "reference":
        averaged, eval_bn = "parameters", "test-batch statistics (models stay in train mode, docs/semantics.md R12)"
        notes.append("reference evaluation uses test-batch BN statistics: results depend on data.eval_batch_size "
                     "(the reference evaluates with the training batch size)")
    else:
        averaged, eval_bn = "parameters and buffers", "running statistics (eval mode)"
    return EmaPlan(method, semantics, L, epochs, s, decay, mode, interval, max_random, epochs, updates,
                   averaged, eval_bn, notes)
