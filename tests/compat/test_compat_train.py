"""One short real run through `fastkd compat train_space` on a CIFAR-100-layout fixture, started from a
reference-layout checkpoint, then exported back to the reference layout."""

from __future__ import annotations

import csv
import json

import torch
from datasets_on_disk import write_cifar100

from fastkd import cli
from fastkd.engine.checkpoint import load_checkpoint
from fastkd.reference.keys import init_weights
from fastkd.models import StudentNet, TeacherNet, create_model


def narrow_pair() -> dict[str, torch.nn.Module]:
    teacher = TeacherNet(create_model("resnet18", num_classes=100, downsample_factor=64.0))
    return {"teacher": teacher,
            "student": StudentNet(create_model("resnet18", num_classes=100, downsample_factor=64.0),
                                  teacher.feature_size)}


def test_reference_command_trains_from_a_reference_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")  # -wandb_entity turns wandb on; this test needs no wandb
    root = write_cifar100(tmp_path / "data", n_train=40, n_test=16)
    torch.manual_seed(123)
    start = {name: m.state_dict() for name, m in narrow_pair().items()}
    torch.save({"teacher_model": start["teacher"], "student_model": start["student"]}, tmp_path / "ref.pth")

    # The README command line, shrunk with fastkd-only flags: 40 images, batch 8 -> L = 5, s = 0.5 -> I = 2.
    argv = ["compat", "train_space", "-gpu_ids", "0", "-wandb_entity", "[your_wandb_entity]", "-net_teacher",
            "resnet18", "-net_student", "resnet18", "-alpha", "0.3", "-temp", "3.0", "-lr", "0.01", "-interval_rate",
            "0.5", "-b", "8", "-gpu", "-dataset", "cifar100", "-epoch", "1",
            "--data-root", str(root), "--init-from", str(tmp_path / "ref.pth"), "--quiet",
            "--set", "model.downsample_factor=64", "model.student_downsample_factor=64", f"output_dir={tmp_path}",
            "name=run", "train.progress=false", "train.tensorboard=false", "train.device=cpu"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "-gpu_ids 0: ignored" in err and "-wandb_entity [your_wandb_entity]: the wandb entity" in err

    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["global_step"] == 5 and summary["replay_events"] == 2
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["eval_student_top1"]) <= 1.0
    assert "method: spaced_online_kd" in (run / "config.yaml").read_text()

    # The run started from ref.pth: its teacher moved away from those weights by 5 SGD steps, not from a fresh init.
    trained = load_checkpoint(run / "last.pt")["learners"]
    first_conv = "net.conv1.0.weight"
    step = (trained["teacher"]["model"][first_conv] - start["teacher"][first_conv]).abs().max()
    assert 0 < step < 0.05

    # Export to the reference layout and load it back into fresh models.
    assert cli.main(["compat", "export", str(run / "last.pt"), str(tmp_path / "out.pth")]) == 0
    fresh = narrow_pair()
    assert init_weights(tmp_path / "out.pth", fresh) == ["student", "teacher"]
    for name, model in fresh.items():
        for key, tensor in model.state_dict().items():
            assert torch.equal(tensor, trained[name]["model"][key]), (name, key)

    # The same command again refuses to overwrite the run.
    assert cli.main(argv) == 2
    assert "already holds a run; add --resume" in capsys.readouterr().err
