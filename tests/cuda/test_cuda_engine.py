"""One compiled engine run per method on the GPU with the CUDA fast path (torch.compile, bf16 autocast,
channels_last, fused optimizer), then steady-state steps under `torch.cuda.set_sync_debug_mode("warn")`: every host
synchronisation inside a step (an `.item()`, a blocking copy) is collected with the fastkd frames that made it,
and the test fails listing all of them.

Models and batch are those of the gpu-quick bench preset (full-width ResNet-18s, batch 128), so the bench that
bench/gpu_check.sh runs next finds these compiled graphs in the inductor cache.
"""

from __future__ import annotations

import contextlib
import math
import traceback
import warnings

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


@contextlib.contextmanager
def host_syncs():
    """Collect every synchronising CUDA call made inside the block, each with the fastkd frames that made it
    (sync debug mode "warn" and the warning hook: all of them are reported at once, not just the first)."""
    found: list[str] = []
    seen: set[str] = set()
    previous = warnings.showwarning

    def note(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return previous(message, category, filename, lineno, file, line)
        frames = [f for f in traceback.extract_stack()[:-1] if "fastkd" in f.filename or "pipelines" in f.filename]
        where = "\n".join(f"  {f.filename}:{f.lineno} {f.name}: {f.line}" for f in frames[-6:]) or "  (no fastkd frame)"
        if where not in seen:
            seen.add(where)
            found.append(where)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = note
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode("default")
            warnings.showwarning = previous
    torch.cuda.synchronize()  # syncs are caught when the host asks for them, so this one stays outside the check


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return bench.write_synthetic_cifar100(tmp_path_factory.mktemp("data"), SCALE.train_images, 128)


@pytest.mark.parametrize("method", list(INTERVALS))
def test_compiled_bf16_step_without_host_syncs(method, data_root, tmp_path):
    cfg = bench.fastkd_config(bench.BENCH_METHODS[method], SCALE, "cuda", data_root, tmp_path / "runs", epochs=3, extra=[
        *INTERVALS[method], "train.compile=on", "train.amp=bf16", "train.channels_last=true",
        f"train.log_every={10 * SCALE.iters_per_epoch}",
    ])
    trainer = Trainer(cfg, tmp_path / "runs" / method, quiet=True)
    runtime = trainer.runtime.describe()
    for setting in ("device=cuda", "precision=bfloat16", "compile=on", "channels_last=on"):
        assert setting in runtime, runtime
    for name, learner in trainer.learners.items():
        assert learner.optimizer.defaults.get("fused") is True, f"{name}: optimizer is not the fused one"
    initial = {name: [p.detach().clone() for p in learner.model.parameters()]
               for name, learner in trainer.learners.items()}

    trainer.fit(max_steps=WARMUP_STEPS)
    torch.cuda.synchronize()
    with host_syncs() as syncs:
        trainer.fit(max_steps=WARMUP_STEPS + CHECKED_STEPS)
    assert not syncs, f"{len(syncs)} host synchronisation(s) in steady-state steps:\n" + "\n---\n".join(syncs)
    assert trainer.global_step == SCALE.iters_per_epoch == WARMUP_STEPS + CHECKED_STEPS

    losses = trainer.meter.read()
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    for name, learner in trainer.learners.items():
        after = list(learner.model.parameters())
        assert all(p.isfinite().all() for p in after), f"{name}: non-finite weights"
        assert any(not torch.equal(a, p) for a, p in zip(initial[name], after)), f"{name}: weights did not move"
