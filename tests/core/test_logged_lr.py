"""The learning rate in metrics.csv and steps.jsonl is the one the epoch's steps trained with, not the LR after the
epoch's scheduler step."""

from __future__ import annotations

import csv
import json
import math

import pytest

from fastkd.config import load_config
from fastkd.engine.trainer import Trainer

LR = 0.05


def _run(tmp_path, method: str, epochs: int, *extra: str) -> Trainer:
    cfg = load_config(None, [
        "name=lr", f"output_dir={tmp_path}", f"method={method}", "data.dataset=digits", "data.batch_size=512",
        "data.eval_batch_size=512", "model.downsample_factor=1024", "model.student_downsample_factor=1024",
        f"optim.lr={LR}", "optim.schedule=cosine", f"train.epochs={epochs}", "train.device=cpu",
        "train.log_every_step=true", "train.progress=false", "train.tensorboard=false", *extra,
    ])
    trainer = Trainer(cfg, tmp_path / "lr", quiet=True)
    trainer.fit()
    return trainer


def _csv_lr(trainer: Trainer) -> list[float]:
    with open(trainer.run_dir / "metrics.csv", newline="") as fh:
        return [float(row["lr"]) for row in csv.DictReader(fh)]


def _cosine(epoch: int, epochs: int) -> float:
    """CosineAnnealingLR with T_max = epochs: the LR of 0-based epoch `epoch`."""
    return LR * (1 + math.cos(math.pi * epoch / epochs)) / 2


def test_metrics_csv_and_steps_jsonl_log_the_lr_each_epoch_trained_with(tmp_path):
    trainer = _run(tmp_path, "online_kd", 3)
    expected = [_cosine(e, 3) for e in range(3)]
    assert _csv_lr(trainer) == pytest.approx(expected, rel=1e-5)  # 0.05 first: not the post-step 0.0375
    steps_per_epoch = len(trainer.sampler)
    rows = [json.loads(line) for line in (trainer.run_dir / "steps.jsonl").read_text().splitlines()]
    assert {row["kind"] for row in rows} == {"teacher", "student"}
    for row in rows:
        assert row["lr"] == pytest.approx(expected[(row["step"] - 1) // steps_per_epoch], rel=1e-12), row


def test_offline_kd_student_phase_logs_the_students_lr(tmp_path):
    """The teacher trains epochs 1-2 (its cosine ends at 0), the student epochs 3-4 from its own schedule's start."""
    trainer = _run(tmp_path, "offline_kd", 2)
    assert _csv_lr(trainer) == pytest.approx([_cosine(0, 2), _cosine(1, 2)] * 2, rel=1e-5)
