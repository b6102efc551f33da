"""`fastkd compat train_space -wandb_entity E -wandb_project P ...` logs as the reference does: to project P of
entity E, under the reference's run name, every epoch's and every step's losses; in wandb's offline mode the run's
logged losses equal metrics.csv and steps.jsonl."""

from __future__ import annotations

import csv
import json

import pytest
from datasets_on_disk import write_cifar100
from wandb_offline import offline_wandb, read_offline_runs

from fastkd import cli

REFERENCE_RUN_NAME = "resnet18_resnet18_interval0.5_lr0.01_temp3.0_alpha0.3_batchsize8_dist_cifar100"
"""train_space.py's wandb run name for these flags."""


def test_compat_train_space_logs_to_wandb_what_metrics_csv_and_steps_jsonl_hold(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'fastkd[wandb]')")
    wandb_dir = offline_wandb(monkeypatch, tmp_path / "wandb")
    root = write_cifar100(tmp_path / "data", n_train=40, n_test=16)
    # 40 images, batch 8 -> L = 5; s = 0.5 -> a replay every I = 2 steps; 2 epochs.
    argv = ["compat", "train_space", "-wandb_entity", "E", "-wandb_project", "P", "-net_teacher", "resnet18",
            "-net_student", "resnet18", "-lr", "0.01", "-interval_rate", "0.5", "-b", "8", "-epoch", "2",
            "--data-root", str(root), "--quiet", "--set", "model.downsample_factor=64",
            "model.student_downsample_factor=64", f"output_dir={tmp_path}", "name=run", "train.progress=false",
            "train.device=cpu", "train.log_every=3"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert f"-wandb_project P: logs to wandb project P as run {REFERENCE_RUN_NAME}" in err

    [run] = read_offline_runs(wandb_dir)
    assert (run.project, run.entity, run.name) == ("P", "E", REFERENCE_RUN_NAME)
    assert run.config["method"] == "spaced_online_kd" and run.config["kd"]["interval"] == 0.5

    metrics = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    epochs = [row for row in run.history if "epoch" in row]
    assert [row["epoch"] for row in epochs] == [1, 2] == [int(row["epoch"]) for row in metrics]
    for logged, row in zip(epochs, metrics):
        losses = [key for key in row if key.endswith(("_loss", "_ce", "_soft", "_feature"))]
        assert "train_student_loss" in losses and "eval_student_loss" in losses
        for key in losses:
            assert f"{logged[key]:.6g}" == row[key], (row["epoch"], key)

    steps = [json.loads(line) for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    logged_steps = [row for row in run.history if "step" in row]
    assert len(logged_steps) == len(steps) > 10
    for logged, row in zip(logged_steps, steps):
        assert logged == {"step": row["step"], "steps/lr": row["lr"],
                          **{f"steps/{row['kind']}_{key}": value for key, value in row.items()
                             if key not in ("step", "kind", "lr")}}
