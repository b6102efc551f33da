"""Oracle: a plain eager re-implementation of the online-KD family, written from the spec (3.1, 4.1, 4.2) with
no engine code, against the engine on the same weights and data: every loss and the final weights within 1e-5.

Both sides run in float64 (`train.float64`): in fp32, two correct implementations of these small BN ResNets drift
apart by more than 1e-5 within 3-4 SGD steps from summation order alone (BN over near-constant channels is
ill-conditioned), so fp32 could not tell a semantic difference from rounding.
"""

import copy
import json
import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from datasets_on_disk import write_cifar100
from fastkd.config import load_config
from fastkd.engine.trainer import Trainer

MEAN = torch.tensor([0.507, 0.487, 0.441], dtype=torch.float64).view(1, 3, 1, 1)
STD = torch.tensor([0.267, 0.256, 0.276], dtype=torch.float64).view(1, 3, 1, 1)
N_TRAIN, BATCH = 36, 8          # L = 5 iterations per epoch, the last batch holds 4 samples
T, ALPHA, BETA, LR = 3.0, 0.3, 0.03, 0.01


def oracle_batches(root):
    with open(root / "cifar-100-python" / "train", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    x = torch.tensor(raw[b"data"]).view(-1, 3, 32, 32).double() / 255.0
    x = (x - MEAN) / STD
    y = torch.tensor(raw[b"fine_labels"])
    return [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(y), BATCH)]


def run_oracle(mode, semantics, teacher, student, batches, epochs, interval, feature_loss="default"):
    log = []
    sgd = dict(lr=LR, momentum=0.9, weight_decay=5e-4)
    opt_t = torch.optim.SGD(teacher.parameters(), **sgd)
    opt_s = torch.optim.SGD(student.parameters(), **sgd)

    def teacher_update(x, y):
        feat_t, z_t = teacher(x)
        loss = F.cross_entropy(z_t, y)
        opt_t.zero_grad()
        loss.backward()
        opt_t.step()
        log.append(("teacher", [loss.item()]))
        return feat_t.detach(), z_t.detach()

    def student_update(x, y, feat_t, z_t):
        feat_s, z_s = student(x)
        ce = F.cross_entropy(z_s, y)
        if semantics == "reference":  # KLDivLoss fed probabilities; unsquared torch.dist
            soft = nn.KLDivLoss(reduction="batchmean")(F.softmax(z_s / T, 1), F.softmax(z_t / T, 1))
            feat = torch.dist(feat_s, feat_t)
        else:
            soft = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(z_s / T, 1), F.softmax(z_t / T, 1)) * T * T
            feat = F.mse_loss(feat_s, feat_t)
        if feature_loss == "ce":  # the reference's -feature_loss CE, under either semantics
            feat = nn.CrossEntropyLoss()(feat_s, feat_t)
        loss = (1 - ALPHA) * ce + ALPHA * soft + BETA * feat
        opt_s.zero_grad()
        loss.backward()
        opt_s.step()
        log.append(("student", [loss.item(), ce.item(), soft.item(), feat.item()]))

    def teacher_targets(x):
        teacher.train(semantics == "reference")
        with torch.no_grad():
            feat_t, z_t = teacher(x)
        teacher.train()
        return feat_t, z_t

    if mode == "offline":
        teacher.train()
        for _ in range(epochs):
            for x, y in batches:
                teacher_update(x, y)
        teacher.eval()
        for _ in range(epochs):
            for x, y in batches:
                with torch.no_grad():
                    feat_t, z_t = teacher(x)
                student_update(x, y, feat_t, z_t)
        return log

    buffer, g = [], 0
    teacher.train()
    student.train()
    for _ in range(epochs):
        for x, y in batches:
            g += 1
            buffer.append((x, y))
            feat_t, z_t = teacher_update(x, y)
            if interval == 0:
                student_update(x, y, feat_t, z_t)
                buffer = []
            elif g % interval == 0:
                for xb, yb in buffer:
                    student_update(xb, yb, *teacher_targets(xb))
                buffer = []
    if semantics == "standard":
        for xb, yb in buffer:
            student_update(xb, yb, *teacher_targets(xb))
    return log


def engine_config(root, out, method, semantics, interval, epochs, extra=()):
    return load_config(None, [
        "name=oracle", f"output_dir={out}", f"method={method}", f"semantics={semantics}", "seed=7",
        "data.dataset=cifar100", f"data.root={root}", "data.augment=none", "data.shuffle=false",
        f"data.batch_size={BATCH}", "data.eval_batch_size=64", "data.pipeline=torch",
        "model.downsample_factor=64", "model.student_downsample_factor=64",
        f"kd.interval={interval}", f"kd.temperature={T}", f"kd.alpha={ALPHA}", f"kd.beta={BETA}",
        f"optim.lr={LR}", f"train.epochs={epochs}", "train.device=cpu", "train.log_every_step=true",
        "train.progress=false", "train.tensorboard=false", "train.float64=true", *extra,
    ])


def engine_log(run_dir):
    rows = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    return [(r["kind"], [r["loss"]] if r["kind"] == "teacher" else [r["loss"], r["ce"], r["soft"], r["feature"]])
            for r in rows]


@pytest.mark.parametrize("method, semantics, interval, epochs", [
    ("spaced_online_kd", "reference", 1.2, 7),   # I = 6: 5 replay events, 5 trailing batches never distilled
    ("spaced_online_kd", "standard", 1.2, 7),    # same, plus eval-mode targets and the trailing flush
    ("online_kd", "reference", 0.0, 6),
    ("offline_kd", "reference", 0.0, 3),
])
def test_engine_matches_oracle(tmp_path, method, semantics, interval, epochs, feature_loss="default"):
    root = write_cifar100(tmp_path / "data", n_train=N_TRAIN, n_test=10)
    extra = () if feature_loss == "default" else (f"kd.feature_loss={feature_loss}",)
    cfg = engine_config(root, tmp_path / "runs", method, semantics, interval, epochs, extra)
    trainer = Trainer(cfg, tmp_path / "runs" / "oracle", quiet=True)
    teacher = copy.deepcopy(trainer.learners["teacher"].model).to(memory_format=torch.contiguous_format)
    student = copy.deepcopy(trainer.learners["student"].model).to(memory_format=torch.contiguous_format)
    assert teacher.net.fc.weight.dtype == torch.float64
    trainer.fit()

    mode = "offline" if method == "offline_kd" else "spaced"
    expected = run_oracle(mode, semantics, teacher, student, oracle_batches(root), epochs,
                          int(5 * interval) if method == "spaced_online_kd" else 0, feature_loss)
    got = engine_log(trainer.run_dir)
    assert [k for k, _ in got] == [k for k, _ in expected]
    assert len(expected) >= 30 and sum(k == "student" for k, _ in expected) > 0
    torch.testing.assert_close(torch.tensor([v for _, vs in got for v in vs], dtype=torch.float64),
                               torch.tensor([v for _, vs in expected for v in vs], dtype=torch.float64),
                               rtol=1e-5, atol=1e-5)
    for name, reference in (("teacher", teacher), ("student", student)):
        engine_state = trainer.learners[name].model.state_dict()
        for key, value in reference.state_dict().items():
            torch.testing.assert_close(engine_state[key], value, rtol=1e-5, atol=1e-5, msg=f"{name} {key}")


@pytest.mark.parametrize("semantics", ["reference", "standard"])
def test_engine_matches_oracle_with_the_ce_feature_loss(tmp_path, semantics):
    test_engine_matches_oracle(tmp_path, "online_kd", semantics, 0.0, 3, feature_loss="ce")
