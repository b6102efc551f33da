"""Oracle: (Spaced) EMA re-implemented eagerly from docs/semantics.md (§6, R11-R13) against the engine, in float64:
every loss, every epoch's raw and EMA evaluation (train-mode BN on test batches under `reference`), and the final
weights and BN buffers of both models.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from fastkd.engine.trainer import evaluation_order
from method_oracles import (BATCH, EVAL_BATCH, assert_logs_match, assert_states_match, batches, eager_copy, engine,
                            engine_evals, engine_steps, eval_batches, score, sgd, step, write_data)

DECAY = 0.9


def run_oracle(model, train, test_after, semantics, epochs, interval):
    """The reference loop: CE steps; every `interval` steps ema <- d*ema + (1-d)*model; evaluate both per epoch, on
    `test_after(e)`: the test batches in the order they are evaluated after epoch e (1-based)."""
    reference = semantics == "reference"
    ema = copy.deepcopy(model)
    optimizer = sgd(model)
    log, evals, counter = [], [], 0
    for epoch in range(1, epochs + 1):
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
        row, test = [], test_after(epoch)
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

    log, evals, ema = run_oracle(model, batches(root, "train", BATCH), lambda e: eval_batches(root, semantics, e),
                                 semantics, epochs, int(spacing * 5) or 1)
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


def test_evaluation_order_is_seeded_shuffled_under_reference_and_in_order_under_standard():
    in_order = evaluation_order(50, seed=7, epochs_trained=3, shuffled=False)
    shuffled = evaluation_order(50, seed=7, epochs_trained=3, shuffled=True)
    assert torch.equal(in_order, torch.arange(50))
    assert sorted(shuffled.tolist()) == list(range(50)) and not torch.equal(shuffled, in_order)
    assert torch.equal(shuffled, evaluation_order(50, seed=7, epochs_trained=3, shuffled=True))  # repeatable
    assert not torch.equal(shuffled, evaluation_order(50, seed=7, epochs_trained=4, shuffled=True))  # per epoch
    assert not torch.equal(shuffled, evaluation_order(50, seed=8, epochs_trained=3, shuffled=True))  # per run seed


@pytest.mark.parametrize("data_shuffle", [True, False])
def test_train_mode_bn_evaluation_is_scored_over_the_batches_of_the_evaluation_order(tmp_path, data_shuffle):
    """Reference EMA evaluates with batch statistics, so each prediction depends on its batch-mates: the logged
    test loss must be the one over the seeded shuffled batches, and with data.shuffle=false (the switch for exact
    comparisons) the one over the batches in file order (docs/semantics.md R18)."""
    root = write_data(tmp_path)
    epochs = 2
    trainer = engine(tmp_path, root, "ema", "reference", epochs,
                     ["model.student=resnet18", f"ema.decay={DECAY}", f"data.shuffle={str(data_shuffle).lower()}"])
    trainer.fit()
    model = eager_copy(trainer.learners["model"].model).train()
    with torch.no_grad():
        shuffled = eval_batches(root, "reference", epochs, data_shuffle=True)
        in_file_order = batches(root, "test", EVAL_BATCH)
        scores = {order: score([model(x)[1] for x, _ in test], test)
                  for order, test in (("shuffled", shuffled), ("in order", in_file_order))}
    logged = engine_evals(trainer.run_dir, ("model",))[-1]
    assert abs(scores["shuffled"][1] - scores["in order"][1]) > 1e-3  # the order matters for this model
    # metrics.csv keeps 6 significant digits and the engine scores float32 logits: 1e-5 covers both
    torch.testing.assert_close(logged, scores["shuffled" if data_shuffle else "in order"], rtol=1e-5, atol=1e-5)
