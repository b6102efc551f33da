"""`fastkd bench --projection`: the paper runs' step counts and the projection arithmetic (the end-to-end run on
the `test` preset is part of tests/bench/test_gpu_check.py's dry run)."""

from __future__ import annotations

import pytest

from fastkd.bench.presets import PRESETS, BenchOptionError
from fastkd.bench.projection import StepCosts, paper_counts, project, projected_runs


def test_paper_counts_follow_the_plans():
    cnn, vit = projected_runs(PRESETS["gpu-quick"])
    # CIFAR-100: L = ceil(50000 / 128) = 391, I = int(391 * 1.5) = 586, 80 epochs = 31280 teacher steps, of which
    # the last 31280 - 53 * 586 = 222 batches are never replayed (docs/semantics.md R4)
    assert paper_counts(cnn, 50000, 128) == {"iters_per_epoch": 391, "teacher_steps": 31280,
                                             "student_steps": 53 * 586, "epochs": 80, "replay_events": 53}
    # DeiT-Ti per epoch: L = 50000 // 128 = 390 (drop_last), S = L: the reference replays S + 1 = 391 steps (R22)
    assert paper_counts(vit, 50000, 128) == {"iters_per_epoch": 390, "teacher_steps": 390, "student_steps": 391,
                                             "epochs": 1, "replay_events": 1}


def test_projection_multiplies_step_costs_by_the_plan():
    costs = StepCosts(startup=3.0, teacher_step=0.01, student_step=0.02, evaluation=0.5, checkpoint=0.25, period=100,
                      replay_steps=100)
    parts = project(costs, {"teacher_steps": 1000, "student_steps": 900, "epochs": 4}, build_seconds=2.0)
    assert parts == pytest.approx({"teacher_steps": 10.0, "student_steps": 18.0, "evaluation": 2.0,
                                   "checkpoints": 1.0, "startup": 5.0, "total": 36.0})


def test_a_preset_without_projection_sizes_is_refused_in_one_line():
    with pytest.raises(BenchOptionError, match="preset cpu-small has no projection sizes; use one of gpu, gpu-quick"):
        projected_runs(PRESETS["cpu-small"])
