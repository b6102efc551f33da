"""Bad flags, flags fastkd cannot honour and the reference's crashing inputs: one line on stderr, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fastkd import cli

ONLINE = ["-net_teacher", "resnet18", "-net_student", "resnet18"]


def run_cli(capsys, argv: list[str]) -> str:
    """The one stderr line of a failing `fastkd compat` call (exit code 2, nothing on stdout)."""
    assert cli.main(["compat", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1, captured.err
    assert lines[0].startswith("fastkd: error: ")
    return lines[0]


@pytest.mark.parametrize("argv,needle", [
    (["train_space", *ONLINE, "-not_a_flag", "1"], "unrecognized arguments: -not_a_flag 1"),
    (["train_space", "-net_teacher", "resnet18"], "required: -net_student"),
    (["train_space", *ONLINE, "-b", "many"], "argument -b: invalid int value: 'many'"),
    (["dropout", "--drop_method", "Foo"], "argument --drop_method: invalid choice: 'Foo'"),
    # its data loaders have ImageNet branches, but its own --dataset choices never reach them
    (["dropout", "--dataset", "imagenet_100"], "argument --dataset/-d: invalid choice: 'imagenet_100'"),
    (["dropout", "--dataset", "cifar100", "--drop", "1.5"], "dropout.rate"),
    (["ema", "-net", "resnet18", "-interval", "-1"], "ema.interval"),
    (["no_such_script"], "unknown script 'no_such_script'; choose one of: train_space, train_kd"),
    (["train_space", *ONLINE, "--set"], "--set needs KEY=VALUE pairs"),
    (["train_space", *ONLINE, "--set", "kd.nope=1"], "unknown key 'kd.nope'"),
    (["train_space", *ONLINE, "--json"], "--json goes with --plan"),
    (["train_space", *ONLINE, "--plan", "--print-config"], "pick one"),
    (["train_space", *ONLINE, "--semantics", "textbook"], "--semantics 'textbook': choose reference or standard"),
    (["train_space", *ONLINE, "--data-root"], "--data-root needs a value"),
])
def test_bad_flags_give_one_line(capsys, argv, needle):
    assert needle in run_cli(capsys, argv)


@pytest.mark.parametrize("argv,needle", [
    (["train_space", "-net_teacher", "resnet18", "-net_student", "vit", "-dataset", "imagenet"],
     "no model of models/nets.py's ImageNet ViT"),
    (["self_kd", "--model", "wideresnet50"], "fastkd has no multi-exit wideresnet50"),
    (["self_kd", "--autoaugment", ""], "--autoaugment '': fastkd cannot honour this"),
    (["dropout", "--dataset", "cub200"], "no CUB-200 reader"),
    (["dropout", "--dataset", "cifar100", "--lr_decay"], "--lr_decay: fastkd cannot honour this (the reference "
                                                         "steps its MultiStepLR only in epochs"),
    (["dropout", "--dataset", "cifar100", "--cutout_input", "--n_holes", "2"], "--n_holes 2"),
    (["dropout", "--dataset", "cifar100", "--cutout_input", "--length", "16.5"], "--length 16.5"),
])
def test_flags_fastkd_cannot_honour_are_refused(capsys, argv, needle):
    line = run_cli(capsys, argv)
    assert needle in line and "fastkd cannot honour this" in line


@pytest.mark.parametrize("argv,needle", [
    (["train_kd", "-net_teacher", "vgg16", "-net_student", "resnet18"], "VGG builders"),
    (["train_space", "-net_teacher", "resnet18", "-net_student", "vgg11"], "VGG builders"),
    (["train_space", "-net_teacher", "resnet34", "-net_student", "resnet18"], "no branch for it"),
    (["train_space", "-net_teacher", "resnet18", "-net_student", "shufflenet"], "tests -net_teacher"),
    (["train_space", "-net_teacher", "vit", "-net_student", "resnet18", "-dataset", "tiny_imagenet"],
     "builds its ViT only for cifar100"),
    (["train_space", *ONLINE, "-optimizer", "RMSprop"], "no optimizer is built"),
    (["train_space", *ONLINE, "-feature_loss", "cosine"], "no feature loss function"),
    (["train_space", *ONLINE, "-dataset", "cifar10"], "-dataset cifar10"),
    (["ema", "-net", "resnet152"], "builds only resnet18, resnet50 and resnet101"),
    (["ema", "-net", "resnet18", "-dataset", "imagenet_100"], "-dataset imagenet_100: the reference script crashes "
                                                              "here (utils.py's get_training_dataloader has no "
                                                              "imagenet_100 branch"),
    (["train_space", *ONLINE, "-dataset", "imagenet_100"], "no imagenet_100 branch"),
    (["self_kd", "--dataset", "cifar10"], "CIFAR-10 branch builds neither loaders nor a model"),
    (["self_kd", "--model", "densenet"], "--model densenet"),
    (["dropout"], "--dataset cifar10 (the reference's default)"),
    (["dropout", "--dataset", "svhn"], "--dataset svhn"),
    (["dropout", "--dataset", "cifar100", "--erasing_input"], "--erasing_input: the reference script crashes"),
    (["dropout", "--dataset", "cifar100", "--drop_method", "SpacedDropout", "--space", "0"],
     "--space 0.0: the reference script crashes here (SpacedDropout divides by int(space*L) = 0"),
    (["dropout", "--dataset", "tiny_imagenet", "--drop_method", "MaxSpacedDropout", "--space", "0.001"],
     "--drop_method MaxDropout"),
])
def test_reference_crashes_are_reported(capsys, argv, needle):
    line = run_cli(capsys, argv)
    assert needle in line and "the reference script crashes here" in line


def test_erasing_input_behind_cutout_input_does_not_crash_as_in_the_reference():
    from fastkd.reference.compat import resolve

    resolved = resolve("dropout", ["--dataset", "cifar100", "--cutout_input", "--erasing_input"])
    assert resolved.config.dropout.cutout_input
    assert any(n.startswith("--erasing_input: no effect") for n in resolved.notes)


def test_training_without_data_fetches_it_and_names_the_by_hand_fix_when_the_host_is_down(capsys, tmp_path,
                                                                                          monkeypatch):
    """As the reference, compat downloads missing data; the archive URLs point at a loopback port nothing listens on
    (tests/conftest.py), so the fetch fails with the line that says where to get the data by hand (exit 1)."""
    monkeypatch.chdir(tmp_path)  # the run folder goes to ./runs
    root = tmp_path / "missing"
    assert cli.main(["compat", "train_space", *ONLINE, "--data-root", str(root), "--quiet"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastkd: error: cannot reach 127.0.0.1:")
    assert "download it by hand from http://127.0.0.1:" in lines[0] and "cifar-100-python/" in lines[0]
    assert not (root / "cifar-100-python").exists()


def test_training_without_data_and_without_download_names_the_fix(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the run folder goes to ./runs
    line = run_cli(capsys, ["train_space", *ONLINE, "--data-root", str(tmp_path / "missing"),
                            "--set", "data.download=false"])
    assert f"data.root {tmp_path / 'missing'}: no such folder" in line
    assert f"`fastkd data fetch cifar100 --root {tmp_path / 'missing'}`" in line


def test_process_exits_2_with_one_line_and_no_traceback():
    """A real process on argparse's own error path (which prints usage + message unless replaced); the other
    failures above take the same route through `fastkd.cli.main`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "fastkd.cli", "compat", "train_space", *ONLINE, "-not_a_flag", "1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("fastkd: error: ")
