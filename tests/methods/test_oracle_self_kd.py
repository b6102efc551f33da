"""Oracle: Spaced self KD re-implemented eagerly from docs/semantics.md (§4.2, §5.3, R6-R10) against the engine on the
same multi-exit ResNet and data, in float64: every loss, the final weights and BN statistics, and the final
evaluation of every exit and of the ensemble.

The oracle keeps the reference's wasted work (the discarded forward at KD iterations runs with autograd, the
full forward between events under `reference`), so matching BN statistics shows the engine's shortcuts change
nothing they must not.
"""

import pytest
import torch
import torch.nn.functional as F

from method_oracles import (CIFAR10_STATS, CIFAR100_STATS, BATCH, L, assert_logs_match, assert_states_match,
                            batches, eager_copy, engine, engine_evals, engine_steps, eval_batches, score, sgd, step,
                            write_data)

T, LAMBDA, MU = 3.0, 0.3, 0.03
FIELDS = {"full": ("loss", "ce", "shallow_ce", "soft", "feature"), "deepest": ("loss",)}
OUTPUTS = ("exit4", "exit3", "exit2", "exit1", "ensemble")


def deepest_only_forward(model, x):
    """Trunk and exit 0 alone: what a textbook implementation computes when only the deepest exit trains."""
    x = model.relu(model.bn1(model.conv1(x)))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return model.fc4(torch.flatten(model.scala4(x), 1))


def run_oracle(model, train, semantics, epochs, interval):
    reference = semantics == "reference"
    optimizer = sgd(model)
    log = []

    def full_step(x, y):
        logits, features = model(x)
        teacher_logits, teacher_feature = logits[0].detach(), features[0].detach()
        ce = F.cross_entropy(logits[0], y)
        loss, shallow_ce, soft_sum = ce, 0.0, 0.0
        for k in (1, 2, 3):
            target = F.softmax(teacher_logits / T, dim=1)
            log_student = F.log_softmax(logits[k] / T, dim=1)
            if reference:   # soft cross-entropy, no T^2
                soft = -(target * log_student).sum(1).mean()
            else:           # Hinton KL with T^2
                soft = F.kl_div(log_student, target, reduction="batchmean") * T * T
            ce_k = F.cross_entropy(logits[k], y)
            loss = loss + LAMBDA * soft + (1 - LAMBDA) * ce_k
            shallow_ce, soft_sum = shallow_ce + ce_k.item(), soft_sum + soft.item()
        feature = 0.0
        for k in ((2, 3) if reference else (1, 2, 3)):
            adapted = model.adaptation_layers[k - 1](features[k])
            feature = feature + (torch.dist(adapted, teacher_feature) if reference
                                 else F.mse_loss(adapted, teacher_feature))
        loss = loss + MU * feature
        step(optimizer, loss)
        log.append(("full", [loss.item(), ce.item(), shallow_ce, soft_sum, feature.item()]))

    def deepest_step(x, y):
        logits = model(x)[0][0] if reference else deepest_only_forward(model, x)
        loss = F.cross_entropy(logits, y)
        step(optimizer, loss)
        log.append(("deepest", [loss.item()]))

    model.train()
    buffer, g = [], 0
    for epoch in range(epochs):
        for i, (x, y) in enumerate(train):
            g += 1
            if interval == 0:
                full_step(x, y)
                continue
            buffer.append((x, y))
            n = (epoch - 1) * L + i + 1 if reference else g   # the reference's index, 0-based epoch
            if n % interval:
                deepest_step(x, y)
                continue
            if reference:
                model(x)   # the reference's forward at a KD iteration, discarded
            for xb, yb in buffer:
                full_step(xb, yb)
            buffer = []
    if not reference:
        for xb, yb in buffer:
            full_step(xb, yb)
    return log


def evaluate(model, test):
    model.eval()
    with torch.no_grad():
        logits = [model(x)[0] for x, _ in test]
    per_exit = [score([z[k] for z in logits], test) for k in range(4)]
    return [v for s in per_exit + [score([sum(z) / 4 for z in logits], test)] for v in s]


@pytest.mark.parametrize("method, semantics, rate, epochs, events", [
    # I = 3: events at g = 2, 5, ..., 29 (g = L mod I); 29 full + 20 deepest-only steps, the last batch dropped
    ("spaced_self_kd", "reference", 0.6, 6, 10),
    # I = 4: events at g = 4, 8, ..., 28, then the trailing 2 batches at the end of training
    ("spaced_self_kd", "standard", 0.8, 6, 8),
    ("self_kd", "reference", 0.0, 6, 30),
])
def test_engine_matches_oracle(tmp_path, method, semantics, rate, epochs, events):
    root = write_data(tmp_path)
    trainer = engine(tmp_path, root, method, semantics, epochs,
                     [f"kd.interval={rate}", f"kd.temperature={T}", f"kd.alpha={LAMBDA}", f"kd.beta={MU}"])
    model = eager_copy(trainer.learners["model"].model)
    assert model.fc4.weight.dtype == torch.float64
    trainer.fit()

    # Reference self KD normalises CIFAR-100 with the CIFAR-10 statistics (docs/semantics.md §2.2).
    stats = CIFAR10_STATS if semantics == "reference" else CIFAR100_STATS
    expected = run_oracle(model, batches(root, "train", BATCH, stats), semantics, epochs, int(L * rate))
    assert_logs_match(engine_steps(trainer.run_dir, FIELDS), expected)
    assert trainer.method.kd_events == events
    assert_states_match(trainer.learners["model"].model, model, "model")
    final = engine_evals(trainer.run_dir, OUTPUTS)[-1]
    test = eval_batches(root, semantics, epochs, stats)  # in order: the engine runs with data.shuffle=false
    torch.testing.assert_close(final, evaluate(model, test), rtol=1e-5, atol=1e-5)
    assert trainer.method.main_model(epochs - 1) == "ensemble"
