"""The run lifecycle: N steps + checkpoint + resume equals one uninterrupted run (bitwise on CPU, across a replay
event, logs holding each epoch/step once); non-finite losses; write access; overrides on resume; Ctrl-C."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from datasets_on_disk import write_cifar100
from fastkd.cli import main
from fastkd.config import load_config
from fastkd.engine import checkpoint
from fastkd.engine import trainer as trainer_module
from fastkd.engine.checkpoint import load_checkpoint
from fastkd.engine.nonfinite import SkipNonFinite
from fastkd.engine.trainer import Trainer


def config(root, out, name, extra=()):
    return load_config(None, [
        f"name={name}", f"output_dir={out}", "method=spaced_online_kd", "seed=3", "data.dataset=cifar100",
        f"data.root={root}", "data.batch_size=8", "data.pipeline=torch", "model.downsample_factor=64",
        "model.student_downsample_factor=64", "kd.interval=1.2", "train.epochs=4", "train.device=cpu",
        "train.deterministic=true", "train.log_every_step=true", "train.progress=false",
        "train.tensorboard=false", *extra,
    ])


def test_interrupted_run_resumes_bitwise(tmp_path):
    root = write_cifar100(tmp_path / "data", n_train=36, n_test=10)
    out = tmp_path / "runs"
    full = Trainer(config(root, out, "full"), out / "full", quiet=True)
    full.fit()

    # Stop after 8 iterations: mid-epoch, after the first replay event (I = 6) with two batches logged.
    part = Trainer(config(root, out, "part", ["train.max_steps=8"]), out / "part", quiet=True)
    part.fit()
    state = load_checkpoint(out / "part" / "last.pt")
    assert (state["global_step"], state["epoch"], state["batch_index"]) == (8, 1, 3)
    assert len(state["method"]["replay"]["seeds"]) == 2
    # What a kill after the checkpoint leaves: log rows past it and temp files of an interrupted save.
    with open(out / "part" / "steps.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 9, "kind": "teacher", "loss": 1.0}) + "\n")
    with open(out / "part" / "metrics.csv", "a") as fh:
        fh.write("2" + "," * (len((out / "part" / "metrics.csv").read_text().splitlines()[0].split(",")) - 1) + "\n")
    stale = [out / "part" / ".last.pt.abc123.tmp", out / "part" / ".best.pt.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    resumed = Trainer(config(root, out, "part"), out / "part", resume=True, quiet=True)
    assert not any(path.exists() for path in stale)
    resumed.fit()

    for name in ("teacher", "student"):
        a = full.learners[name].model.state_dict()
        b = resumed.learners[name].model.state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs after resume"
    log_a = (out / "full" / "steps.jsonl").read_text().splitlines()
    log_b = (out / "part" / "steps.jsonl").read_text().splitlines()
    assert [json.loads(r) for r in log_a] == [json.loads(r) for r in log_b]
    assert resumed.summary()["student_final_top1"] == full.summary()["student_final_top1"]
    assert (out / "full" / "metrics.csv").read_text().count("\n") == 5  # header + 4 epochs
    epochs = [line.split(",")[0] for line in (out / "part" / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2", "3", "4"]


def test_augmented_run_is_repeatable(tmp_path):
    root = write_cifar100(tmp_path / "data", n_train=20, n_test=10)
    out = tmp_path / "runs"
    states = []
    for name in ("a", "b"):
        trainer = Trainer(config(root, out, name, ["train.epochs=2"]), out / name, quiet=True)
        trainer.fit()
        states.append(trainer.learners["student"].model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


# --------------------------------------------------------------------------- the run lifecycle through the CLI
DIGITS = """\
name: tiny
output_dir: runs
method: spaced_online_kd
kd: {interval: 1.0}
data: {dataset: digits, batch_size: 256, eval_batch_size: 512}
model: {downsample_factor: 64.0, student_downsample_factor: 64.0}
train: {epochs: 1, device: cpu, deterministic: true, progress: false, tensorboard: false}
"""
"""Digits with width/64 ResNet-18s: L = 6 steps of 256 images per epoch, a few seconds on the CPU."""


def run_cli(tmp_path, monkeypatch, capsys, *argv):
    """`fastkd ARGV` in-process from tmp_path: (exit status, stderr lines)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(DIGITS)
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.strip()]


def all_finite(checkpoint):
    state = load_checkpoint(checkpoint)
    return all(torch.isfinite(t).all() for learner in state["learners"].values()
               for t in learner["model"].values() if t.is_floating_point())


def test_nonfinite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    # Epoch 1 at lr 0.01, then x1e8: the first step of epoch 2 diverges.
    code, err = run_cli(tmp_path, monkeypatch, capsys, "train", "c.yaml", "train.epochs=2", "optim.schedule=multistep",
                        "optim.milestones=[1]", "optim.gamma=1e8")
    assert code == 1 and len(err) == 1, err
    assert re.fullmatch(r"fastkd: error: the (teacher|student) training loss became (nan|inf|-inf) at step \d+ "
                        r"\(epoch 2\); the run stopped and runs/tiny/last\.pt keeps step 6; .*train\.nonfinite=skip.*",
                        err[0]), err[0]
    run = tmp_path / "runs" / "tiny"
    assert load_checkpoint(run / "last.pt")["global_step"] == 6
    assert all_finite(run / "last.pt") and all_finite(run / "best.pt")
    assert (run / "metrics.csv").read_text().count("\n") == 2  # header + epoch 1: no row for the diverged epoch
    assert json.loads((run / "summary.json").read_text())["finished"] is False


def test_nonfinite_loss_from_the_start_writes_no_checkpoint(tmp_path, monkeypatch, capsys):
    code, err = run_cli(tmp_path, monkeypatch, capsys, "train", "c.yaml", "optim.lr=1e6")
    assert code == 1 and len(err) == 1
    assert "no checkpoint was written; lower optim.lr (now 1e+06)" in err[0]
    assert not (tmp_path / "runs" / "tiny" / "last.pt").exists()
    assert not (tmp_path / "runs" / "tiny" / "best.pt").exists()


def test_nonfinite_skip_counts_skipped_steps_and_keeps_finite_weights(tmp_path, monkeypatch, capsys):
    code, err = run_cli(tmp_path, monkeypatch, capsys, "train", "c.yaml", "optim.lr=1e6", "train.nonfinite=skip",
                        "--quiet")
    assert code == 0, err
    run = tmp_path / "runs" / "tiny"
    with open(run / "metrics.csv") as fh:
        row = next(csv.DictReader(fh))
    assert int(row["nonfinite_skipped_steps"]) > 0
    assert all_finite(run / "last.pt")


def test_skipped_step_leaves_weights_buffers_and_optimizer_state_unchanged():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=True)
    guard = SkipNonFinite([model], optimizer)

    def step(scale):
        guard.begin()
        optimizer.zero_grad()
        loss = model(torch.randn(8, 4)).sum() * scale
        loss.backward()
        optimizer.step()
        guard.end(loss)

    step(1.0)
    momentum = {f"momentum{i}": optimizer.state[p]["momentum_buffer"] for i, p in enumerate(model.parameters())}
    before = {k: v.clone() for k, v in {**model.state_dict(), **momentum}.items()}
    step(float("nan"))
    after = {**model.state_dict(),
             **{f"momentum{i}": optimizer.state[p]["momentum_buffer"] for i, p in enumerate(model.parameters())}}
    assert all(torch.equal(before[k], after[k]) for k in before)
    step(1.0)
    assert not torch.equal(before["0.weight"], model.state_dict()["0.weight"])


def test_resume_may_raise_epochs_and_records_what_runs(tmp_path, monkeypatch, capsys):
    assert run_cli(tmp_path, monkeypatch, capsys, "train", "c.yaml", "--quiet")[0] == 0
    code, err = run_cli(tmp_path, monkeypatch, capsys, "train", "--resume", "runs/tiny", "train.epochs=2", "--quiet")
    assert code == 0, err
    run = tmp_path / "runs" / "tiny"
    assert load_config(run / "config.yaml").train.epochs == 2
    assert [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2"]
    code, err = run_cli(tmp_path, monkeypatch, capsys, "train", "--resume", "runs/tiny", "optim.lr=0.5")
    assert code == 2 and "optim.lr=0.5 (run has 0.01)" in err[0]
    assert load_config(run / "config.yaml").optim.lr == 0.01


def _cut_last_row(path):
    text = path.read_text()
    path.write_text(text[:len(text) - 7])


@pytest.mark.parametrize("damage", [
    lambda run: (run / "metrics.csv").write_text(""),
    lambda run: (run / "metrics.csv").unlink(),
    lambda run: _cut_last_row(run / "metrics.csv"),
    lambda run: (run / "metrics.csv").write_text("garbage\n1,2,3\n"),
], ids=["emptied", "deleted", "last-row-cut", "overwritten"])
def test_resume_rebuilds_a_damaged_metrics_csv_from_the_checkpoint(damage, tmp_path, monkeypatch, capsys):
    """The checkpoint holds every epoch row it logged: metrics.csv is rewritten from them, never appended to a
    damaged file (a headerless row, or one glued onto a cut row)."""
    assert run_cli(tmp_path, monkeypatch, capsys, "train", "c.yaml", "--quiet", "name=full", "train.epochs=2")[0] == 0
    assert run_cli(tmp_path, monkeypatch, capsys, "train", "c.yaml", "--quiet", "train.epochs=2",
                   "train.max_steps=9")[0] == 0  # stopped in epoch 2, after epoch 1's row
    run = tmp_path / "runs" / "tiny"
    damage(run)
    with open(run / "steps.jsonl", "a") as fh:
        fh.write('{"step": 10, "kind": "stud')  # the row a kill cut short
    code, err = run_cli(tmp_path, monkeypatch, capsys, "train", "--resume", "runs/tiny", "--quiet",
                        "train.max_steps=null")
    assert code == 0, err
    full, resumed = (list(csv.DictReader(open(tmp_path / "runs" / name / "metrics.csv"))) for name in ("full", "tiny"))
    assert list(resumed[0]) == list(full[0]) and [row["epoch"] for row in resumed] == ["1", "2"]
    timings = ("images_per_s", "data_wait_share", "epoch_seconds")
    assert {k: v for k, v in resumed[0].items() if k not in timings} == \
        {k: v for k, v in full[0].items() if k not in timings}
    # epoch 2's training means cover the steps after the resume only; its evaluation is of bitwise equal weights
    assert {k: v for k, v in resumed[1].items() if k.startswith("eval_")} == \
        {k: v for k, v in full[1].items() if k.startswith("eval_")}


def test_resume_refuses_a_damaged_steps_jsonl_line_in_one_line(tmp_path, monkeypatch, capsys):
    assert run_cli(tmp_path, monkeypatch, capsys, "train", "c.yaml", "--quiet", "train.epochs=2",
                   "train.max_steps=9", "train.log_every_step=true")[0] == 0
    steps = tmp_path / "runs" / "tiny" / "steps.jsonl"
    lines = steps.read_text().splitlines(keepends=True)
    steps.write_text("".join([lines[0], "not json\n", *lines[1:]]))
    code, err = run_cli(tmp_path, monkeypatch, capsys, "train", "--resume", "runs/tiny", "--quiet")
    assert code == 2 and len(err) == 1 and "steps.jsonl: line 2 is not a steps.jsonl row ('not json')" in err[0]


def test_unwritable_run_folder_fails_before_training(tmp_path, monkeypatch, capsys):
    assert run_cli(tmp_path, monkeypatch, capsys, "train", "c.yaml", "--quiet")[0] == 0
    before = (tmp_path / "runs" / "tiny" / "metrics.csv").read_text()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoint.tempfile, "NamedTemporaryFile", read_only)
    monkeypatch.setattr(Trainer, "fit", lambda self: pytest.fail("trained in an unwritable folder"))
    code, err = run_cli(tmp_path, monkeypatch, capsys, "train", "--resume", "runs/tiny", "train.epochs=2")
    assert code == 1 and len(err) == 1 and "Permission denied" in err[0]
    assert (tmp_path / "runs" / "tiny" / "metrics.csv").read_text() == before


def test_ctrl_c_during_start_up_exits_130_in_one_line(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "load_dataset", interrupted)
    code, err = run_cli(tmp_path, monkeypatch, capsys, "train", "c.yaml")
    assert code == 130 and len(err) == 1 and err[0].startswith("fastkd: interrupted")


def _start_training(tmp_path):
    """A long digits run in a child process, returned once it has finished its first epoch."""
    (tmp_path / "c.yaml").write_text(DIGITS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-m", "fastkd.cli", "train", "c.yaml", "train.epochs=100"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in child.stdout:
        if line.startswith("epoch 1/"):
            return child
    pytest.fail(f"the child ended before its first epoch: {child.stderr.read()}")


def test_ctrl_c_saves_and_prints_how_to_continue(tmp_path):
    child = _start_training(tmp_path)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130
    assert "Traceback" not in out + err and "fastkd results" not in out  # no (empty) results table
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].endswith("continue with: fastkd train --resume runs/tiny"), err
    state = load_checkpoint(tmp_path / "runs" / "tiny" / "last.pt")
    assert f"interrupted at step {state['global_step']} " in lines[0]
    assert not list((tmp_path / "runs" / "tiny").glob(".*.tmp"))


def test_second_ctrl_c_aborts_in_one_line(tmp_path):
    child = _start_training(tmp_path)
    child.send_signal(signal.SIGINT)
    time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    # 130, or killed by SIGINT (what a shell also shows as 130) when the second one lands while Python shuts down.
    assert child.returncode in (130, -signal.SIGINT)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) <= 1 and all(line.startswith("fastkd: interrupted") for line in lines), err
    assert lines or child.returncode != 130
    load_checkpoint(tmp_path / "runs" / "tiny" / "last.pt")  # epoch 1's checkpoint at least, never half a file


def test_fused_sgd_with_parameters_that_start_training_late_matches_foreach():
    """Self KD's shallow exits get their first gradient only at a KD event, after the deepest exit's momentum
    buffers exist; the fused SGD build_optimizer returns must take that step, and equal torch's foreach SGD."""
    from fastkd.config import OptimConfig
    from fastkd.engine.steps import build_optimizer

    cfg = OptimConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4)
    torch.manual_seed(0)
    start = [torch.randn(5, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)]
    grads = [[torch.randn(5, 3, dtype=torch.float64), None],
             [torch.randn(5, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)],
             [torch.randn(5, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)]]
    results = []
    for build in (lambda params: build_optimizer(params, cfg),
                  lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=True)):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        optimizer = build(params)
        for step in grads:
            for param, grad in zip(params, step):
                param.grad = None if grad is None else grad.clone()
            optimizer.step()
        results.append([p.detach() for p in params])
    assert build_optimizer([torch.nn.Parameter(start[0].clone())], cfg).defaults["fused"] is True
    for fused, foreach in zip(*results):
        torch.testing.assert_close(fused, foreach, rtol=0, atol=1e-15)
