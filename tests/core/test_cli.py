"""The command line: plan numbers, train/eval round trip, resume guards, one-line errors without tracebacks."""

import json
import os
import subprocess
import sys

import pytest

from datasets_on_disk import write_cifar100
from fastkd import __version__, configs
from fastkd.cli import COMMANDS, main


def fastkd(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastkd.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_plan_json_for_the_paper_cifar100_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: spaced_online_kd\ndata:\n  dataset: cifar100\nkd:\n  interval: 1.5\n")
    proc = fastkd("plan", str(cfg), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert (plan["iters_per_epoch"], plan["interval"], plan["replay_events"], plan["never_distilled"]) == \
        (391, 586, 53, 222)


@pytest.mark.slow
def test_train_eval_and_resume_guard(tmp_path):
    root = write_cifar100(tmp_path / "data", n_train=24, n_test=8)
    args = ["train", "name=cli", "output_dir=runs", "data.dataset=cifar100", f"data.root={root}",
            "data.batch_size=8", "model.downsample_factor=64", "model.student_downsample_factor=64",
            "train.epochs=2", "train.progress=false", "train.tensorboard=false"]
    cfg = tmp_path / "base.yaml"
    cfg.write_text("kd:\n  interval: 1.0\n")
    proc = fastkd(args[0], str(cfg), *args[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "cli"
    for name in ("config.yaml", "metrics.csv", "last.pt", "best.pt", "summary.json"):
        assert (run / name).is_file(), name
    header, *rows = (run / "metrics.csv").read_text().splitlines()
    assert "eval_student_top1" in header and len(rows) == 2
    assert "test top-1 accuracy" in proc.stdout and "student" in proc.stdout

    again = fastkd(args[0], str(cfg), *args[1:], cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr

    done = fastkd("train", "--resume", str(run), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # already finished: resumes into nothing left to do

    ev = fastkd("eval", str(run / "best.pt"), "--json", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert {"eval_teacher_top1", "eval_student_top1"} <= set(json.loads(ev.stdout))

    text = fastkd("eval", str(run / "best.pt"), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "best.pt is last.pt as of the epoch with the best test top-1 of 'student'" in text.stdout
    assert "eval_student_top1: " in text.stdout


@pytest.mark.parametrize("args, expected", [
    (["eval", "missing.pt"], "missing.pt: no such checkpoint file"),
    (["train", "nope.yaml"], "nope.yaml: cannot read config"),
    (["train", "--resume", "runs/none"], "runs/none: no such run folder"),
    (["train", "c.yaml", "data.dataset=cifar100"],
     "data (the default data root: data.root and $FASTKD_DATA are unset): no such folder"),
    (["train", "c.yaml", "model.student=resnet19"], "unknown model 'resnet19'"),
    (["eval", "garbage.pt"], "garbage.pt: not a readable checkpoint"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, args, expected):
    (tmp_path / "c.yaml").write_text("train:\n  epochs: 1\n")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_input_in_a_real_process_prints_no_traceback(tmp_path):
    proc = fastkd("train", "missing.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "fastkd: error: missing.yaml: cannot read config (No such file or directory)"


@pytest.mark.parametrize("command", [[], ["train"], ["plan"], ["eval"], ["config"], ["demo"], ["data"], ["bench"],
                                     ["reproduce"], ["compat"]])
def test_help_works_on_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastkd" + "".join(f" {c}" for c in command))


@pytest.mark.parametrize("argv", [
    ["plan", "c.yaml", "--json", "kd.interval=2", "data.batch_size=64"],
    ["plan", "--json", "c.yaml", "kd.interval=2", "data.batch_size=64"],
    ["plan", "c.yaml", "kd.interval=2", "--json", "data.batch_size=64"],
    ["plan", "kd.interval=2", "c.yaml", "data.batch_size=64", "--json"],
])
def test_flags_and_overrides_in_any_order(argv, tmp_path, monkeypatch, capsys):
    (tmp_path / "c.yaml").write_text("method: spaced_online_kd\n")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["iters_per_epoch"], plan["interval"]) == (23, 46)  # digits: 1437 training images, B = 64


def test_train_accepts_overrides_after_flags(tmp_path, monkeypatch, capsys):
    (tmp_path / "c.yaml").write_text("model:\n  downsample_factor: 64\n  student_downsample_factor: 64\n"
                                     "train:\n  device: cpu\n  tensorboard: false\n")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "c.yaml", "--quiet", "name=ordered", "train.max_steps=1", "data.batch_size=256"]) == 0
    saved = (tmp_path / "runs" / "ordered" / "config.yaml").read_text()
    assert "max_steps: 1" in saved and "batch_size: 256" in saved


def test_config_command_prints_resolved_config_and_describe(tmp_path, monkeypatch, capsys):
    (tmp_path / "c.yaml").write_text("kd:\n  alpha: 0.5\n")
    monkeypatch.chdir(tmp_path)
    assert main(["config", "c.yaml", "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "alpha: 0.5" in out and "epochs: 3" in out
    assert main(["config", "--describe"]) == 0
    assert "optim.betas  ([float, float], default [0.9, 0.999], allowed: each >= 0, < 1, finite)" in \
        capsys.readouterr().out


def test_unwritable_output_location_fails_before_training_with_exit_1(tmp_path, monkeypatch, capsys):
    (tmp_path / "c.yaml").write_text("train:\n  epochs: 1\n")
    (tmp_path / "taken").write_text("a file")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "c.yaml", "output_dir=taken"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastkd: error: taken/experiment: cannot create the run folder") and "is a file" in err
    assert main(["demo", "--out", "/proc/fastkd-demo"]) == 1
    assert "inside /proc, a virtual file system" in capsys.readouterr().err


def test_version_and_top_level_help_name_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"fastkd {__version__}\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(f"\n    {name} " in listed or f"\n    {name}\n" in listed for name in COMMANDS), listed


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"], ["eval", "--help"], ["trian"],
                                  ["train"], ["plan", "c.yaml", "--jsn"], ["config", "list", "resnet18"]])
def test_help_version_and_argument_errors_do_not_import_torch(argv, tmp_path):
    """--help and argument errors answer before torch loads (it alone takes seconds to import)."""
    script = ("import sys\nfrom fastkd.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "sys.stdout.flush()\nprint('torch imported' if 'torch' in sys.modules else 'torch not imported')")
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert proc.stdout.splitlines()[-1] == "torch not imported", proc.stdout + proc.stderr


def test_unknown_command_names_the_closest(capsys):
    assert main(["trian", "c.yaml"]) == 2
    assert capsys.readouterr().err == "fastkd: error: unknown command 'trian'; did you mean train? (see fastkd --help)\n"


def test_argument_errors_carry_one_prefix(capsys):
    assert main(["plan", "c.yaml", "--jsn"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastkd: error: plan: unrecognized arguments: --jsn") and err.count("fastkd") == 2  # + --help


def test_a_closed_pipe_ends_quietly(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "fastkd", "config", "--describe"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout.readline()  # `| head -1`: read a line, then close the pipe
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141) and err == "", err


def test_config_list_names_packaged_configs_by_pattern(capsys):
    assert main(["config", "list"]) == 0
    every = capsys.readouterr().out.split()
    assert "demo" in every and "paper/online_kd/cifar100/resnet18_s1.5" in every and every == sorted(every)
    assert main(["config", "list", "paper/vit/*"]) == 0
    vit = capsys.readouterr().out.split()
    assert vit and all(name.startswith("paper/vit/") for name in vit)
    assert main(["config", "list", "nothing-like-this"]) == 2
    assert "no packaged config matches 'nothing-like-this'" in capsys.readouterr().err


def test_packaged_config_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "paper/online_kd/cifar100/resnet18_s1.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["interval"] == 586  # s = 1.5 of L = 391
    assert main(["config", "demo.yaml"]) == 0
    assert "name: demo-spaced" in capsys.readouterr().out
    assert configs.find("../pyproject") is None and configs.find("/etc/passwd") is None
    assert main(["plan", "paper/online_kd/cifar100/resnet18_s1.6"]) == 2
    assert "did you mean paper/online_kd/cifar100/resnet18_s1.5?" in capsys.readouterr().err


@pytest.mark.parametrize("variable", ["RANK", "SLURM_PROCID"])
def test_an_error_before_the_process_group_is_printed_by_rank_0_only(variable, tmp_path, monkeypatch, capsys):
    """Under torchrun (RANK) or srun (SLURM_PROCID) every process reads the same bad config: one line in all."""
    monkeypatch.chdir(tmp_path)
    printed = []
    for rank in ("0", "1", "2"):
        monkeypatch.setenv(variable, rank)
        assert main(["train", "missing.yaml"]) == 2
        printed += capsys.readouterr().err.splitlines()
    assert printed == ["fastkd: error: missing.yaml: cannot read config (No such file or directory)"]
