"""Interval arithmetic of the online-KD family (spec 4.1, 4.2), in one tested place; `fastkd plan` prints it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..config import ConfigError
from ..kernels import EmaSchedule

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
        notes.append(f"interval {rate} < 1/L = {1 / L:.4g} epochs gives I = 0: this is online KD (reference quirk 4)")
    if interval == 0:
        return OnlineKDPlan(method, semantics, L, epochs, rate, "online", 0, epochs, total, total, 0, 0, notes)
    events, trailing = divmod(total, interval)
    if semantics == "standard" and trailing:
        notes.append(f"standard semantics replays the trailing {trailing} batches at the end of training")
        events, trailing = events + 1, 0
    elif trailing:
        notes.append(f"the last {trailing} batches are never distilled (reference quirk 4)")
    return OnlineKDPlan(method, semantics, L, epochs, rate, "spaced", interval, epochs, total, total - trailing,
                        events, trailing, notes)


# ------------------------------------------------------------------------------------------ self KD (spec 4.3)
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
                     "batches buffered (quirk 9)")
    notes.append(f"{2 * interval - 1} optimizer steps per interval: {interval - 1} deepest-only, {interval} full "
                 "(the deepest exit trains twice on every replayed batch, quirk 11)")
    full_steps, kd_events = last, events
    if semantics == "standard" and trailing:
        notes.append(f"standard semantics distils the trailing {trailing} batches at the end of training")
        full_steps, kd_events, trailing = total, events + 1, 0
    elif trailing:
        notes.append(f"the last {trailing} batches are never distilled")
    first_events = [first + k * interval for k in range(min(events, 5))]
    return SelfKDPlan(method, semantics, L, epochs, rate, interval, offset, epochs, kd_events, first_events,
                      full_steps, total - events, trailing, notes)


# ---------------------------------------------------------------------------------------------- EMA (spec 5)
RANDOM_EMA_FRACTION = 0.4
"""Random EMA intervals are int(0.4 * L * U[0,1)) + 1 iterations (spec 5)."""


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
    """`ema`: update after every optimizer step; `spaced_ema`: the reference's `-interval` rule (spec 5)."""
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
            notes.append(f"s = {s} < 1/L: the reference never updates (quirk 17); standard updates every step")
        elif interval == 0:
            notes.append(f"s = {s} < 1/L = {1 / L:.4g} gives int(s*L) = 0: the EMA is never updated (quirk 17)")
        mode = "never" if interval == 0 else "every_step" if interval == 1 else "fixed"
        updates = total // interval if interval else 0
    if semantics == "reference":
        averaged, eval_bn = "parameters", "test-batch statistics (models stay in train mode, quirk 16)"
        notes.append("reference evaluation uses test-batch BN statistics: results depend on data.eval_batch_size "
                     "(the reference evaluates with the training batch size)")
    else:
        averaged, eval_bn = "parameters and buffers", "running statistics (eval mode)"
    return EmaPlan(method, semantics, L, epochs, s, decay, mode, interval, max_random, epochs, updates,
                   averaged, eval_bn, notes)


# ------------------------------------------------------------------------------------------ dropout (spec 6)
RANDOM_DROPOUT_PERIOD = 500
"""S >= 500 iterations selects the random-rate variant (spec 6, quirk 20)."""
RANDOM_CUTOUT_SPACE = 500.0
"""The reference's input cutout switches to random lengths at space > 500 (in epochs, quirk 20)."""

REFERENCE_DROPOUT_NAMES = {("dropout", "standard"): "StandardDropout", ("dropout", "max"): "MaxDropout",
                           ("spaced_dropout", "standard"): "SpacedDropout",
                           ("spaced_dropout", "max"): "MaxSpacedDropout"}


@dataclass(frozen=True)
class DropoutPlan:
    method: str
    semantics: str
    iters_per_epoch: int
    epochs: int
    reference_name: str
    """The reference's `--drop_method` this reproduces."""
    op: str
    """standard (inverted dropout) | max (MaxDropout), at the 4 sites after layer1..layer4."""
    rate: float
    space: float
    period: int
    """S = int(space * L) forward calls per period of p_t = p*|sin(pi*t/S)| (0 = constant rate)."""
    variant: str
    """constant | sine | random (p*U[0,1) per site and forward)."""
    total_epochs: int
    counter: str
    """What advances t: every forward (reference, evaluation included) or training steps only (standard)."""
    active_at_eval: bool
    cutout: str
    """off | constant | sine | random: the batch cutout of `dropout.cutout_input`."""
    cutout_length: int
    cutout_period: float
    """Iterations per period of the cutout length l_t = length*|sin(pi*count/period)| (float, not truncated)."""
    notes: list[str] = field(default_factory=list)

    def rate_at(self, t: int) -> float:
        """p_t of the sine variant at forward call t, in the reference's float64 operation order."""
        return self.rate * abs(math.sin((math.pi / self.period) * t))

    def cutout_box_at(self, count: int) -> int:
        """Box side int(l_t) before training step `count` (0-based) for the constant and sine cutouts."""
        if self.cutout == "constant":
            return int(self.cutout_length)
        return int(self.cutout_length * abs(math.sin((math.pi / self.cutout_period) * count)))

    def as_dict(self) -> dict:
        return asdict(self)


def plan_dropout(method: str, semantics: str, iters_per_epoch: int, epochs: int, op: str, rate: float,
                 space: float, cutout_input: bool, cutout_length: int) -> DropoutPlan:
    """`dropout`: constant rate; `spaced_dropout`: p_t over S = int(space*L) forward calls (spec 6)."""
    L = iters_per_epoch
    notes: list[str] = []
    period = int(space * L)
    if method == "spaced_dropout" and period == 0:
        raise ConfigError(f"dropout.space = {space} gives a period S = int(space * L) = 0 iterations (L = {L}); "
                         "spaced_dropout needs space >= 1/L (the reference divides by zero); "
                         "use method: dropout for a constant rate")
    if method == "dropout":
        variant, period = "constant", 0
    elif period >= RANDOM_DROPOUT_PERIOD:
        variant = "random"
        notes.append(f"S = int({space} * {L}) = {period} >= {RANDOM_DROPOUT_PERIOD} iterations selects random rates "
                     f"p*U[0,1) at each site and forward (quirk 20: --space >= {RANDOM_DROPOUT_PERIOD / L:.3g} here)")
    else:
        variant = "sine"
    reference = semantics == "reference"
    if reference:
        counter = "every forward (training and evaluation)"
        if variant == "sine":
            notes.append("the rate counter also advances once per evaluation batch (quirk 19): ceil(test size / "
                         "data.eval_batch_size) per evaluation, 79 with the reference's CIFAR-100 batch of 128")
        notes.append("dropout stays active at evaluation (quirk 18): test accuracy is stochastic")
    else:
        counter = "training steps"
    cutout, cutout_period = "off", 0.0
    if cutout_input:
        random_cutout = space > RANDOM_CUTOUT_SPACE if reference else space * L >= RANDOM_DROPOUT_PERIOD
        cutout = "constant" if space == 0 else "random" if random_cutout else "sine"
        cutout_period = space * L if cutout == "sine" else 0.0
        if reference and method == "spaced_dropout" and cutout != "constant" and (cutout == "random") != (
                variant == "random"):
            notes.append("the reference's cutout switches to random lengths at space > 500 epochs, its dropout at "
                         "S >= 500 iterations (quirk 20): the two schedules differ in kind here")
    return DropoutPlan(method, semantics, L, epochs, REFERENCE_DROPOUT_NAMES[(method, op)], op, rate, space, period,
                       variant, epochs, counter, reference, cutout, cutout_length, cutout_period, notes)
