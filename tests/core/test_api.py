"""The Python API (fastkd.train / plan / evaluate / load_config): the commands' results as values, and their
one-line errors raised as FastkdError."""

import subprocess
import sys

import pytest

import fastkd
from fastkd.errors import ConfigError, FastkdError

TINY = {"model.downsample_factor": 64, "model.student_downsample_factor": 64, "data.batch_size": 256,
        "train.device": "cpu", "train.epochs": 1, "train.tensorboard": False, "train.progress": False}
"""Overrides that make the demo config train in about a second (width/8 ResNet-18s, six steps)."""


def test_import_fastkd_stays_light():
    proc = subprocess.run([sys.executable, "-c", "import sys, fastkd; fastkd.__version__; "
                           "print(sorted(m for m in ('torch', 'fastkd.api', 'pydantic') if m in sys.modules))"],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_load_config_takes_names_paths_and_both_override_spellings(tmp_path):
    cfg = fastkd.load_config("demo", **{"train.epochs": 2}, kd__alpha=0.5, data__root=tmp_path)
    assert (cfg.name, cfg.train.epochs, cfg.kd.alpha, cfg.data.root) == ("demo-spaced", 2, 0.5, str(tmp_path))
    assert fastkd.load_config(cfg, name="other").name == "other"
    path = tmp_path / "c.yaml"
    path.write_text("kd:\n  interval: 2.0\n")
    assert fastkd.load_config(path).kd.interval == 2.0
    assert fastkd.load_config(None, name="x").train == fastkd.load_config().train


def test_plan_is_the_cli_plan_as_a_dict():
    plan = fastkd.plan("paper/online_kd/cifar100/resnet18_s1.5")
    assert (plan["iters_per_epoch"], plan["interval"], plan["replay_events"]) == (391, 586, 53)


@pytest.mark.parametrize("call, message", [
    (lambda: fastkd.load_config("demo", trian__epochs=1), "unknown key 'trian'"),
    (lambda: fastkd.load_config("demo", **{"train.epochs": 0}), "train.epochs"),
    (lambda: fastkd.load_config("no/such/config"), "no/such/config: cannot read config"),
    (lambda: fastkd.load_config(42), "expected a YAML path, a packaged config's name or an ExperimentConfig"),
    (lambda: fastkd.evaluate("missing.pt"), "missing.pt: no such checkpoint file"),
    (lambda: fastkd.train("demo", resume="runs/none"), "runs/none: no such run folder"),
])
def test_errors_are_the_cli_one_liners(call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FastkdError, match=message) as info:
        call()
    assert len(str(info.value).splitlines()) == 1


def test_train_returns_the_summary_and_evaluate_scores_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = fastkd.train("demo", quiet=True, **TINY)
    run = tmp_path / "runs" / "demo-spaced"
    assert summary["epochs_done"] == 1 and (run / "summary.json").is_file()
    results = fastkd.evaluate(run / "best.pt")
    assert set(results) >= {"eval_teacher_top1", "eval_student_top1"}
    assert 0 <= results["eval_student_top1"] <= 1
    with pytest.raises(FastkdError, match="already holds a run"):
        fastkd.train("demo", quiet=True, **TINY)
    with pytest.raises(ConfigError, match="not a loaded config"):
        fastkd.train(fastkd.load_config("demo"), resume=run)
