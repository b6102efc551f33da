"""Oracle: (Spaced) Dropout re-implemented from docs/semantics.md (§3.3, §7, §2.5, R14-R16) against the engine,
in float64: every loss, every epoch's evaluation and the final weights.

The rate schedule, MaxDropout and the batch cutout are written here from the spec. Random parts (inverted-dropout
masks, random rates, cutout centres and random box sides) draw from torch's global generator in the engine's
order, so both sides see the same samples; the tests restore the generator state the engine started from.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from method_oracles import (BATCH, L, assert_logs_match, assert_states_match, batches, eager_copy, engine,
                            engine_evals, engine_steps, eval_batches, score, sgd, step, write_data)

RATE, LENGTH = 0.5, 16


def max_dropout(x, p):
    """Zero the elements whose global min-max normalised value exceeds 1 - p; no rescaling."""
    n = (x - x.min()) / (x.max() - x.min())
    return x.masked_fill(n > 1 - p, 0.0)


def inverted_dropout(x, p):
    keep = torch.rand(x.shape, dtype=torch.float32) >= p
    return x * keep / (1 - p)


class Oracle:
    """The dropout ResNet forward with explicit rate schedule and counters (docs/semantics.md §7)."""

    def __init__(self, model, op, variant, period, reference):
        self.model, self.op, self.variant, self.period, self.reference = model, op, variant, period, reference
        self.t = 0   # forward calls that advance the schedule

    def rate(self):
        if self.variant == "constant":
            return RATE
        if self.variant == "random":
            return RATE * float(torch.rand((), dtype=torch.float64))
        return RATE * abs(math.sin((math.pi / self.period) * self.t))

    def drop(self, x):
        p = self.rate()
        return max_dropout(x, p) if self.op == "max" else inverted_dropout(x, p)

    def forward(self, x, training):
        m = self.model
        active = training or self.reference
        out = torch.relu(m.bn1(m.conv1(x)))
        for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
            out = layer(out)
            out = self.drop(out) if active else out
        if training or self.reference:
            self.t += 1
        return m.linear(torch.flatten(m.avg_pool(out), 1))


def cutout(x, count, kind, period):
    """One box for the whole batch (docs/semantics.md §2.5), side int(l_t) for training step `count`."""
    if kind == "random":
        side = int(LENGTH * float(torch.rand((), dtype=torch.float64)))
    else:
        side = int(LENGTH * abs(math.sin((math.pi / period) * count)))
    half = side // 2
    cy, cx = int(torch.randint(32, ())), int(torch.randint(32, ()))
    mask = torch.ones(32, 32, dtype=x.dtype)
    mask[max(cy - half, 0):min(cy + half, 32), max(cx - half, 0):min(cx + half, 32)] = 0
    return x * mask


def run_oracle(oracle, train, test_after, epochs, cutout_kind, cutout_period):
    """`test_after(e)`: the test batches, in the order they are evaluated after epoch e (1-based)."""
    optimizer = sgd(oracle.model, nesterov=True)
    log, evals, count = [], [], 0
    for epoch in range(1, epochs + 1):
        oracle.model.train()
        for x, y in train:
            if cutout_kind != "off":
                x = cutout(x, count, cutout_kind, cutout_period)
            loss = F.cross_entropy(oracle.forward(x, training=True), y)
            step(optimizer, loss)
            log.append(("model", [loss.item()]))
            count += 1
        oracle.model.eval()
        test = test_after(epoch)
        with torch.no_grad():
            evals.append(score([oracle.forward(x, training=False) for x, _ in test], test))
    return log, evals


@pytest.mark.parametrize("method, semantics, op, space, variant, cutout_kind, channels_last", [
    # MaxSpacedDropout, S = 4 forward calls, counter advanced by the 3 test batches of every epoch;
    # spaced cutout with period space * L = 4.0 training steps
    ("spaced_dropout", "reference", "max", 0.8, "sine", "sine", True),
    ("spaced_dropout", "standard", "standard", 0.8, "sine", "sine", False),
    # SpacedDropout's random variant (S = 500) with random cutout lengths (standard: same S >= 500 sentinel)
    ("spaced_dropout", "standard", "standard", 100.0, "random", "random", False),
    # StandardDropout at a constant rate, active while evaluating
    ("dropout", "reference", "standard", 0.0, "constant", "off", False),
])
def test_engine_matches_oracle(tmp_path, method, semantics, op, space, variant, cutout_kind, channels_last):
    root = write_data(tmp_path)
    epochs = 6
    trainer = engine(tmp_path, root, method, semantics, epochs, [
        f"dropout.op={op}", f"dropout.rate={RATE}", f"dropout.space={space}", f"dropout.length={LENGTH}",
        f"dropout.cutout_input={cutout_kind != 'off'}", "optim.nesterov=true", f"train.channels_last={channels_last}",
    ])
    plan = trainer.plan
    assert (plan.variant, plan.cutout) == (variant, cutout_kind)
    oracle = Oracle(eager_copy(trainer.learners["model"].model), op, variant, int(space * L),
                    semantics == "reference")
    rng = torch.get_rng_state()
    trainer.fit()

    torch.set_rng_state(rng)
    log, evals = run_oracle(oracle, batches(root, "train", BATCH), lambda e: eval_batches(root, semantics, e), epochs,
                            cutout_kind, space * L)
    assert_logs_match(engine_steps(trainer.run_dir, {"model": ("loss",)}), log)
    torch.testing.assert_close(engine_evals(trainer.run_dir, ("model",)), evals, rtol=1e-5, atol=1e-5)
    assert_states_match(trainer.learners["model"].model, oracle.model, "model")
    assert trainer.method.forwards == oracle.t == epochs * (L + (3 if semantics == "reference" else 0))
