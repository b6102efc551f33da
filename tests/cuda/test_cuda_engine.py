"""One compiled engine run per method on the GPU with the CUDA fast path (torch.compile, bf16 autocast,
channels_last, fused optimizer), then steady-state steps under `torch.cuda.set_sync_debug_mode("error")`: any host
synchronisation inside a step (an `.item()`, a blocking copy) raises.

Models and batch are those of the gpu-quick bench preset (full-width ResNet-18s, batch 128), so the bench that
bench/gpu_check.sh runs next finds these compiled graphs in the inductor cache.
"""

from __future__ import annotations

import math

import pytest
import torch

from fastkd import bench
from fastkd.engine.trainer import Trainer

SCALE = bench.Scale(128, 128 * 8, 1.0)  # L = 8 iterations per epoch
INTERVALS = {
    # I = 4: a replay (self KD: a KD event) at steps 4 and 8, so the checked steps 5-8 include one
    "spaced_online_kd": ["kd.interval=0.5"],
    "online_kd": [],
    "spaced_self_kd": ["kd.interval=0.5"],
    "spaced_ema": ["ema.interval=0.5"],  # EMA update every 4 steps
    "spaced_dropout": [],
}
WARMUP_STEPS, CHECKED_STEPS = 4, 4
"""Steps 1-4 compile every graph (a replay included); steps 5-8 end exactly at L, before the epoch-end read."""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return bench.write_synthetic_cifar100(tmp_path_factory.mktemp("data"), SCALE.train_images, 128)


@pytest.mark.parametrize("method", list(INTERVALS))
def test_compiled_bf16_step_without_host_syncs(method, data_root, tmp_path):
    cfg = bench.fastkd_config(bench.BENCH_METHODS[method], SCALE, "cuda", data_root, tmp_path / "runs", epochs=3, extra=[
        *INTERVALS[method], "train.compile=on", "train.amp=bf16", "train.channels_last=true",
        f"train.log_every={10 * SCALE.iters_per_epoch}",
    ])
    trainer = Trainer(cfg, tmp_path / "runs" / method, quiet=True, checkpoints=False)
    runtime = trainer.runtime.describe()
    for setting in ("device=cuda", "precision=bfloat16", "compile=on", "channels_last=on"):
        assert setting in runtime, runtime
    for name, learner in trainer.learners.items():
        assert learner.optimizer.defaults.get("fused") is True, f"{name}: optimizer is not the fused one"
    initial = {name: [p.detach().clone() for p in learner.model.parameters()]
               for name, learner in trainer.learners.items()}

    trainer.fit(max_steps=WARMUP_STEPS)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.fit(max_steps=WARMUP_STEPS + CHECKED_STEPS)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.global_step == SCALE.iters_per_epoch == WARMUP_STEPS + CHECKED_STEPS

    losses = trainer.meter.read()
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    for name, learner in trainer.learners.items():
        after = list(learner.model.parameters())
        assert all(p.isfinite().all() for p in after), f"{name}: non-finite weights"
        assert any(not torch.equal(a, p) for a, p in zip(initial[name], after)), f"{name}: weights did not move"
