"""pytest-benchmark: one Spaced online KD interval on the CPU, the fastkd engine vs a plain eager loop of the same work.

Both sides start from the same weights and draw the same augmented batches from the same device-resident pipeline;
one interval = I = L teacher steps, then L student replay steps against fresh no-grad train-mode teacher targets
(docs/semantics.md §5.1). The plain loop is what a careful user would write by hand: the eager KD loss
(`kd_loss(impl="reference")`, the reference's unfused ops), foreach SGD, channels_last like the engine, no logging
and no host syncs; its settings are the engine's config. The ratio of the two is the engine's overhead
(scheduling, replay log, fused-loss dispatch, device-side metrics, epoch bookkeeping).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fastkd.bench import BENCH_METHODS, FastkdRounds, Scale, fastkd_config, write_synthetic_cifar100
from fastkd.data import EpochSampler, load_dataset
from fastkd.engine.trainer import Trainer
from fastkd.kernels import kd_loss
from fastkd.pipelines import build_pipeline, get_recipe

BATCH, ITERS, WIDTH_DIVISOR = 32, 4, 16.0
GROUP = f"spaced online KD interval, CPU, batch {BATCH} x {ITERS}, ResNet-18 width/4"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench_engine")
    root = write_synthetic_cifar100(tmp / "data", BATCH * ITERS, 16)
    cfg = fastkd_config(BENCH_METHODS["spaced_online_kd"], Scale(BATCH, BATCH * ITERS, WIDTH_DIVISOR), "cpu", root,
                        tmp / "runs", epochs=1000)
    trainer = Trainer(cfg, tmp / "runs" / "engine", quiet=True)
    return root, trainer, FastkdRounds(trainer, ITERS)


@pytest.fixture(scope="module")
def plain_interval(engine):
    root, trainer, _ = engine
    train, _ = load_dataset("cifar100", str(root))
    pipe = build_pipeline(train.images, train.labels, get_recipe("online_kd"), mean=train.mean, std=train.std,
                          device="cpu", backend="torch")
    sampler = EpochSampler(len(train), BATCH, seed=0)
    teacher = copy.deepcopy(trainer.learners["teacher"].model)
    student = copy.deepcopy(trainer.learners["student"].model)
    kd, optim = trainer.cfg.kd, trainer.cfg.optim
    sgd = dict(lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay, foreach=True)
    opt_t, opt_s = torch.optim.SGD(teacher.parameters(), **sgd), torch.optim.SGD(student.parameters(), **sgd)
    epoch = [0]

    def run() -> None:
        batches = [(sampler.batch(epoch[0], i), sampler.batch_seed(epoch[0], i)) for i in range(ITERS)]
        for indices, seed in batches:
            x, y = pipe(indices, seed)
            loss = F.cross_entropy(teacher(x)[1], y)
            opt_t.zero_grad(set_to_none=True)
            loss.backward()
            opt_t.step()
        for indices, seed in batches:
            x, y = pipe(indices, seed)
            with torch.no_grad():
                feature_t, logits_t = teacher(x)
            feature_s, logits_s = student(x)
            loss = kd_loss(logits_s, logits_t, y, temperature=kd.temperature, alpha=kd.alpha, soft="reference_prob_kl",
                           impl="reference").total + kd.beta * torch.dist(feature_s, feature_t)
            opt_s.zero_grad(set_to_none=True)
            loss.backward()
            opt_s.step()
        epoch[0] += 1

    return run


def test_engine_interval(benchmark, engine):
    _, _, rounds = engine
    benchmark.group = GROUP
    benchmark.extra_info["images_per_round"] = BATCH * ITERS
    benchmark.pedantic(rounds.train_epoch, rounds=5, warmup_rounds=1)


def test_plain_eager_interval(benchmark, plain_interval):
    benchmark.group = GROUP
    benchmark.extra_info["images_per_round"] = BATCH * ITERS
    benchmark.pedantic(plain_interval, rounds=5, warmup_rounds=1)
