"""Oracle: (Spaced) EMA re-implemented eagerly from the spec (5, quirks 16-17) against the engine, in float64:
every loss, every epoch's raw and EMA evaluation (train-mode BN on test batches under `reference`), and the final
weights and BN buffers of both models.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from method_oracles import (BATCH, EVAL_BATCH, assert_logs_match, assert_states_match, batches, eager_copy, engine,
                            engine_evals, engine_steps, score, sgd, step, write_data)

DECAY = 0.9


def run_oracle(model, train, test, semantics, epochs, interval):
    """The reference loop: CE steps; every `interval` steps ema <- d*ema + (1-d)*model; evaluate both per epoch."""
    reference = semantics == "reference"
    ema = copy.deepcopy(model)
    optimizer = sgd(model)
    log, evals, counter = [], [], 0
    for _ in range(epochs):
        model.train()
        for x, y in train:
            loss = F.cross_entropy(model(x)[1], y)
            step(optimizer, loss)
            log.append(("model", [loss.item()]))
            counter += 1
            if counter == interval:
                counter = 0
                with torch.no_grad():
                    for average, param in zip(ema.parameters(), model.parameters()):
                        average.copy_(average * DECAY + param * (1 - DECAY))
                    if not reference:
                        for average, buffer in zip(ema.buffers(), model.buffers()):
                            average.copy_(average * DECAY + buffer * (1 - DECAY) if buffer.is_floating_point()
                                          else buffer)
        row = []
        for net in (model, ema):
            net.train(reference)   # reference: never switched to eval mode
            with torch.no_grad():
                row += score([net(x)[1] for x, _ in test], test)
        evals.append(row)
    return log, evals, ema


@pytest.mark.parametrize("method, semantics, spacing, updates", [
    ("spaced_ema", "reference", 0.4, 15),    # int(0.4 * 5) = every 2 steps
    ("spaced_ema", "standard", 0.4, 15),
    ("ema", "reference", 0.0, 30),           # every step
])
def test_engine_matches_oracle(tmp_path, method, semantics, spacing, updates):
    root = write_data(tmp_path)
    epochs = 6
    trainer = engine(tmp_path, root, method, semantics, epochs,
                     ["model.student=resnet18", f"ema.decay={DECAY}", f"ema.interval={spacing}"])
    model = eager_copy(trainer.learners["model"].model)
    trainer.fit()

    log, evals, ema = run_oracle(model, batches(root, "train", BATCH), batches(root, "test", EVAL_BATCH), semantics,
                                 epochs, int(spacing * 5) or 1)
    assert_logs_match(engine_steps(trainer.run_dir, {"model": ("loss",)}), log)
    torch.testing.assert_close(engine_evals(trainer.run_dir, ("model", "ema")), evals, rtol=1e-5, atol=1e-5)
    assert trainer.method.ema_updates == updates
    assert_states_match(trainer.learners["model"].model, model, "model")
    assert_states_match(trainer.method.ema.module, ema, "ema")


def test_checkpoint_holds_the_ema_and_its_schedule(tmp_path):
    root = write_data(tmp_path)
    trainer = engine(tmp_path, root, "spaced_ema", "reference", 1, ["ema.decay=0.5", "ema.interval=1000"])
    trainer.fit()
    state = torch.load(trainer.run_dir / "last.pt", weights_only=True)["method"]
    ema_state = trainer.method.ema.module.state_dict()
    assert state["ema"]["policy"] == "params_only" and state["ema_updates"] == trainer.method.ema_updates
    for key, value in state["ema"]["module"].items():
        assert torch.equal(value, ema_state[key]), key
    assert state["schedule"]["interval"] == trainer.method.schedule.interval
