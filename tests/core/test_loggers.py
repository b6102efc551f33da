"""The run's loggers (engine/loggers.py): wandb gets what metrics.csv and steps.jsonl get (same keys, same steps,
also across --resume, into the same wandb run), TensorBoard gets the metrics.csv rows, and a logger asked for
whose package is missing stops the run at start in one line."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from fastkd.cli import main
from fastkd.config import load_config
from fastkd.engine.loggers import STEP_PREFIX, WANDB_RUN_ID_FILE, TensorBoardSink
from fastkd.engine.trainer import Trainer
from wandb_offline import offline_wandb, read_offline_runs

TINY = ["name=run", "method=spaced_online_kd", "data.dataset=digits", "data.batch_size=256",
        "model.downsample_factor=64", "model.student_downsample_factor=64", "train.device=cpu",
        "train.progress=false", "train.deterministic=true"]
"""Digits at batch 256: L = 6 steps per epoch, a replay event every 6 steps (kd.interval 1)."""


def tiny(out, *extra):
    return load_config(None, [*TINY, f"output_dir={out}", *extra])


def train_command(folder, *extra: str) -> list[str]:
    """`fastkd train` of the tiny run with `extra` overrides (an empty config file, the settings as overrides)."""
    (folder / "c.yaml").write_text("{}\n")
    return ["train", str(folder / "c.yaml"), *TINY, f"output_dir={folder}", *extra]


def hide(monkeypatch, *modules: str) -> None:
    """Make `import module` fail as if the package were not installed."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def csv_rows(run_dir):
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def jsonl_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]


def assert_same_as_metrics_csv(epoch_rows, run_dir):
    """The logged epoch rows carry every metrics.csv column with its value (csv keeps 6 significant digits)."""
    expected = csv_rows(run_dir)
    assert [row["epoch"] for row in epoch_rows] == [int(row["epoch"]) for row in expected]
    for logged, row in zip(epoch_rows, expected):
        assert set(logged) == {key for key, value in row.items() if value != ""}
        for key, value in row.items():
            if value != "":
                shown = f"{logged[key]:.6g}" if isinstance(logged[key], float) else str(logged[key])
                assert shown == value, (row["epoch"], key)


def assert_same_as_steps_jsonl(step_rows, run_dir):
    """The logged step rows are the steps.jsonl rows: `step`, the step's LR as steps/lr, and each loss as
    steps/<kind>_<name>."""
    expected = [{"step": row["step"], f"{STEP_PREFIX}lr": row["lr"],
                 **{f"{STEP_PREFIX}{row['kind']}_{k}": v for k, v in row.items() if k not in ("step", "kind", "lr")}}
                for row in jsonl_rows(run_dir)]
    assert step_rows == expected


# ------------------------------------------------------------------------------------------------ wandb
def test_wandb_offline_logs_what_metrics_csv_and_steps_jsonl_hold_and_resume_continues_the_run(
        tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'fastkd[wandb]')")
    offline_wandb(monkeypatch, tmp_path / "wandb")
    monkeypatch.delenv("WANDB_DIR")  # the default: the wandb run lives in the run folder
    out = tmp_path / "runs"
    settings = ["train.epochs=2", "train.log_every=4", "train.log_every_step=true", "log.wandb.project=proj",
                "log.wandb.entity=team", "log.wandb.mode=offline"]
    # Stop after 8 of 12 steps (mid-epoch 2, after the first replay event), then resume to the end.
    Trainer(tiny(out, *settings, "train.max_steps=8"), out / "run", quiet=True).fit()
    first_id = (out / "run" / WANDB_RUN_ID_FILE).read_text().strip()
    Trainer(tiny(out, *settings), out / "run", resume=True, quiet=True).fit()

    runs = read_offline_runs(out / "run" / "wandb")
    assert len(runs) == 2 and {run.id for run in runs} == {first_id}  # one wandb run, continued
    assert (out / "run" / WANDB_RUN_ID_FILE).read_text().strip() == first_id
    for run in runs:
        assert (run.project, run.entity, run.name) == ("proj", "team", "run")
        assert run.config["kd"]["interval"] == 1.0 and run.config["log"]["wandb"]["project"] == "proj"
    history = [row for run in runs for row in run.history]
    assert_same_as_metrics_csv([row for row in history if "epoch" in row], out / "run")
    assert_same_as_steps_jsonl([row for row in history if "step" in row], out / "run")
    assert {row["step"] for row in history if "step" in row} == set(range(1, 13))


def test_wandb_run_name_defaults_to_the_run_name_and_each_run_gets_its_own_id(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'fastkd[wandb]')")
    wandb_dir = offline_wandb(monkeypatch, tmp_path / "wandb")  # WANDB_DIR: wandb's files go there instead
    out = tmp_path / "runs"
    for name in ("a", "b"):
        Trainer(tiny(out, f"name={name}", "train.max_steps=1", "log.wandb.project=proj"), out / name,
                quiet=True).fit()
    runs = read_offline_runs(wandb_dir)
    assert [(run.name, run.entity) for run in runs] == [("a", ""), ("b", "")]
    assert runs[0].id != runs[1].id
    assert not (out / "a" / "wandb").exists()


def test_wandb_missing_package_fails_at_start_in_one_line(tmp_path, monkeypatch, capsys):
    hide(monkeypatch, "wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    code = main(train_command(tmp_path, "log.wandb.project=proj"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "log.wandb.project: 'proj', but wandb is not installed: pip install 'fastkd[wandb]'" in err
    assert not (tmp_path / "run" / "config.yaml").exists()  # stopped before anything was built


def test_tensorboard_true_without_the_package_fails_at_start_in_one_line(tmp_path, monkeypatch, capsys):
    hide(monkeypatch, "tensorboard", "torch.utils.tensorboard")
    code = main(train_command(tmp_path, "train.tensorboard=true"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "train.tensorboard: true, but tensorboard is not installed: pip install 'fastkd[tensorboard]'" in err
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_without_the_packages_auto_tensorboard_and_disabled_wandb_train_without_them(tmp_path, monkeypatch):
    hide(monkeypatch, "wandb", "tensorboard", "torch.utils.tensorboard")
    monkeypatch.setenv("WANDB_MODE", "disabled")  # wandb's own switch: log.wandb.mode unset follows it
    cfg = tiny(tmp_path, "train.max_steps=1", "log.wandb.project=proj")
    assert cfg.train.tensorboard == "auto"
    summary = Trainer(cfg, tmp_path / "run", quiet=True).fit()
    assert summary["global_step"] == 1
    assert not (tmp_path / "run" / "tb").exists() and not (tmp_path / "run" / WANDB_RUN_ID_FILE).exists()


# ------------------------------------------------------------------------------------------ TensorBoard
def test_tensorboard_gets_the_metrics_csv_rows_and_a_resume_replaces_what_followed_the_checkpoint(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'fastkd[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "runs" / "run"
    Trainer(tiny(tmp_path / "runs", "train.epochs=2", "train.tensorboard=true"), run_dir, quiet=True).fit()
    rows = csv_rows(run_dir)
    # What a run resumed from epoch 1's checkpoint does: its epoch 2 replaces the first run's.
    sink = TensorBoardSink(run_dir / "tb")
    sink.resume(epochs_done=1, global_step=6, logged=rows[:1])
    sink.open({})
    sink.log_epoch({"epoch": 2, "phase": "both", "train_teacher_loss": 123.0})
    sink.close(failed=False)

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    numeric = [key for key in rows[0] if key not in ("epoch", "phase")]
    assert sorted(events.Tags()["scalars"]) == sorted(numeric)
    for key in numeric:  # TensorBoard keeps float32, metrics.csv 6 significant digits
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        expected = [(1, pytest.approx(float(rows[0][key]), rel=1e-5))]
        if key == "train_teacher_loss":
            assert logged == [*expected, (2, 123.0)]
        else:
            assert logged[0] == expected[0], key
