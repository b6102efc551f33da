"""The dropout family's plan (docs/semantics.md §7): the rate schedule p_t, its counter, and the spaced input
cutout of a run of dropout or spaced dropout."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..errors import ConfigError

RANDOM_DROPOUT_PERIOD = 500
"""S >= 500 iterations selects the random-rate variant (docs/semantics.md §7)."""
RANDOM_CUTOUT_SPACE = 500.0
"""The reference's input cutout switches to random lengths at space > 500 (in epochs, docs/semantics.md R16)."""

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
    """standard (inverted dropout) | max (MaxDropout), at every dropout site of the model."""
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
                 space: float, cutout_input: bool, cutout_length: int, *, wide_resnet: bool = False) -> DropoutPlan:
    """`dropout`: constant rate; `spaced_dropout`: p_t over S = int(space*L) forward calls (docs/semantics.md §7).

    `wide_resnet`: the model is the dropout WideResNet. The reference's WideResNet always applies MaxDropout at a
    constant rate and builds it once (so it stops at evaluation); `reference` semantics allows only that run.
    """
    L = iters_per_epoch
    notes: list[str] = []
    reference = semantics == "reference"
    if reference and wide_resnet and (method, op) != ("dropout", "max"):
        raise ConfigError(f"the reference's WideResNet has no {REFERENCE_DROPOUT_NAMES[(method, op)]}: it always "
                          "applies MaxDropout at the constant dropout.rate; use method: dropout with dropout.op: "
                          "max, or semantics: standard to run this schedule on it")
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
                     f"p*U[0,1) at each site and forward (docs/semantics.md §7: --space >= "
                     f"{RANDOM_DROPOUT_PERIOD / L:.3g} here)")
    else:
        variant = "sine"
    if reference:
        counter = "every forward (training and evaluation)"
        if variant == "sine":
            notes.append("the rate counter also advances once per evaluation batch (docs/semantics.md R15): "
                         "ceil(test size / "
                         "data.eval_batch_size) per evaluation, 79 with the reference's CIFAR-100 batch of 128")
        if wide_resnet:
            notes.append("the reference's WideResNet builds its MaxDropout once, so evaluation runs without dropout "
                         "(its layout is inferred, fastkd/models/wide_resnet.py)")
        else:
            notes.append("dropout stays active at evaluation (docs/semantics.md R14): test accuracy is stochastic")
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
                         "S >= 500 iterations (docs/semantics.md R16): the two schedules differ in kind here")
    return DropoutPlan(method, semantics, L, epochs, REFERENCE_DROPOUT_NAMES[(method, op)], op, rate, space, period,
                       variant, epochs, counter, reference and not wide_resnet, cutout, cutout_length, cutout_period,
                       notes)
