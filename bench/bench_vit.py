"""pytest-benchmark: one DeiT-Ti training step on the CPU at 32 px, the fastkd engine vs the reference's pycls step.

Both sides start from the same weights and train the same CIFAR-100-layout data at `data.image_size` 32 (the
reference's 224 px would take seconds per step on a CPU). fastkd: `vit_base` through the engine, one epoch of one
batch (its device-side RandAugment pipeline, fused CE, foreach AdamW with the reference's parameter groups).
Reference: the pycls hot path from `fastkd.bench.reference_style.vit`: a batch from the timm PIL loader, the
one-hot helper's assert, soft-target CE, AdamW with the same groups, top-1/top-5 errors and the `.item()` reads.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools

import pytest
import torch

from fastkd.bench import BENCH_METHODS, FastkdRounds, Scale, fastkd_config, write_synthetic_cifar100
from fastkd.bench.reference_style.vit import (reference_adamw, soft_target_cross_entropy, topk_errors,
                                              vit_train_loader)
from fastkd.engine.trainer import Trainer

BATCH, IMAGE_SIZE, NUM_CLASSES = 16, 32, 100
GROUP = f"DeiT-Ti training step, CPU, batch {BATCH}, {IMAGE_SIZE} px"
VIT_BASE = dataclasses.replace(BENCH_METHODS["vit_spaced_kd"], name="vit_base", setting="DeiT-Ti, no KD", section={},
                               reference_script="vit/pycls/core/trainer.py (DeiT-Ti base)")
"""The ViT row's student, optimizer and data settings without its KD (vit_base takes no vit.* spacing)."""


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench_vit")
    root = write_synthetic_cifar100(tmp / "data", BATCH, 16)
    cfg = fastkd_config(VIT_BASE, Scale(BATCH, BATCH, image_size=IMAGE_SIZE), "cpu", root, tmp / "runs",
                        epochs=1000)
    trainer = Trainer(cfg, tmp / "runs" / "engine", quiet=True)
    return root, trainer


@pytest.fixture(scope="module")
def reference_step(engine):
    root, trainer = engine
    model = copy.deepcopy(trainer.learners["student"].model).train()
    o = trainer.cfg.optim
    optimizer = reference_adamw({"": model}, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas), eps=o.eps)
    loader = vit_train_loader(root, IMAGE_SIZE, BATCH, num_workers=0)
    batches = (batch for _ in itertools.count() for batch in loader)  # a fresh pass (new augmentations) per epoch

    def run() -> list[float]:
        x, y = next(batches)
        assert y.max() < NUM_CLASSES
        preds = model(x)
        loss = soft_target_cross_entropy(preds, torch.nn.functional.one_hot(y, NUM_CLASSES).float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return [value.item() for value in (loss, *topk_errors(preds, y))]

    return run


@pytest.mark.parametrize("impl", ["fastkd", "reference"])
def test_deit_tiny_step(benchmark, impl, engine, reference_step):
    benchmark.group = GROUP
    benchmark.extra_info["images_per_round"] = BATCH
    step = FastkdRounds(engine[1], iters_per_epoch=1).train_epoch if impl == "fastkd" else reference_step
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
