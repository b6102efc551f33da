"""`-net_teacher/-net_student` mobilenet, mobilenetv2, shufflenet, shufflenetv2 and vit: what models/nets.py builds
for each pair (including its shufflenet quirk), where it crashes, and short real runs of every model as teacher and
as student, exported to the reference layout and loaded back."""

from __future__ import annotations

import json

import pytest
import torch
from datasets_on_disk import write_cifar100

from fastkd import cli
from fastkd.engine.checkpoint import load_checkpoint
from fastkd.models import StudentNet, TeacherNet, create_model
from fastkd.reference.compat import resolve
from fastkd.reference.errors import CompatError
from fastkd.reference.keys import init_weights

SHUFFLE_NOTE = "builds a {} student, as the reference does"


@pytest.mark.parametrize("teacher,student,dataset,built,note", [
    ("mobilenet", "mobilenetv2", "cifar100", ("mobilenet", "mobilenetv2"), None),
    ("resnet18", "vit", "cifar100", ("resnet18", "vit_cifar"), None),
    ("vit", "mobilenet", "cifar100", ("vit_cifar", "mobilenet"), None),
    ("mobilenetv2", "resnet50", "tiny_imagenet", ("mobilenetv2", "resnet50"), None),
    ("shufflenet", "shufflenet", "tiny_imagenet", ("shufflenet", "shufflenet"), None),
    ("shufflenetv2", "shufflenetv2", "cifar100", ("shufflenetv2", "shufflenetv2"), None),
    ("shufflenet", "mobilenet", "cifar100", ("shufflenet", "mobilenet"), None),  # tested before the teacher's name
    # the student builder tests -net_teacher for the shufflenets before the VGG and ViT names, and instead of its own
    ("shufflenet", "vit", "cifar100", ("shufflenet", "shufflenet"),
     "-net_student vit: " + SHUFFLE_NOTE.format("shufflenet")),
    ("shufflenetv2", "shufflenet", "cifar100", ("shufflenetv2", "shufflenetv2"),
     "-net_student shufflenet: " + SHUFFLE_NOTE.format("shufflenetv2")),
    ("shufflenet", "vgg16", "tiny_imagenet", ("shufflenet", "shufflenet"),
     "-net_student vgg16: " + SHUFFLE_NOTE.format("shufflenet")),
])
def test_models_nets_builds(teacher, student, dataset, built, note):
    resolved = resolve("train_space", ["-net_teacher", teacher, "-net_student", student, "-dataset", dataset])
    assert (resolved.config.model.teacher, resolved.config.model.student) == built
    shuffle_notes = [n.split(" (")[0] for n in resolved.notes if "as the reference does" in n]
    assert shuffle_notes == ([] if note is None else [note])
    assert resolved.config.name.startswith(f"{teacher}_{student}_")  # the reference's run name keeps the flags


@pytest.mark.parametrize("argv,needle", [
    (["-net_teacher", "vit", "-net_student", "resnet18", "-dataset", "tiny_imagenet"],
     "-net_teacher vit: the reference script crashes here (models/nets.py builds its ViT only for cifar100"),
    (["-net_teacher", "resnet18", "-net_student", "vit", "-dataset", "tiny_imagenet"], "-net_student vit: the "),
    (["-net_teacher", "mobilenet", "-net_student", "shufflenetv2"], "pass -net_teacher shufflenetv2 too"),
])
def test_reference_crashes_are_refused(argv, needle):
    with pytest.raises(CompatError, match="the reference script crashes here") as error:
        resolve("train_space", argv)
    assert needle in str(error.value)


def pair(teacher: str, student: str) -> dict[str, torch.nn.Module]:
    built = TeacherNet(create_model(teacher, num_classes=100))
    return {"teacher": built, "student": StudentNet(create_model(student, num_classes=100), built.feature_size)}


# Every new model once as teacher and once as student; one run in float64.
@pytest.mark.parametrize("teacher,student,registered,float64", [
    ("mobilenet", "mobilenetv2", ("mobilenet", "mobilenetv2"), False),
    ("mobilenetv2", "vit", ("mobilenetv2", "vit_cifar"), False),
    ("shufflenet", "shufflenet", ("shufflenet", "shufflenet"), True),
    ("shufflenetv2", "shufflenetv2", ("shufflenetv2", "shufflenetv2"), False),
    ("vit", "mobilenet", ("vit_cifar", "mobilenet"), False),
])
def test_short_run_exports_and_reloads(tmp_path, capsys, teacher, student, registered, float64):
    root = write_cifar100(tmp_path / "data", n_train=16, n_test=8)
    argv = ["compat", "train_space", "-net_teacher", teacher, "-net_student", student, "-interval_rate", "0.5",
            "-b", "8", "-epoch", "1", "-dataset", "cifar100", "--data-root", str(root), "--quiet",
            "--set", f"output_dir={tmp_path}", "name=run", "train.progress=false", "train.tensorboard=false",
            "train.device=cpu", f"train.float64={str(float64).lower()}"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["global_step"] == 2  # 16 images, batch 8; s = 0.5 -> I = 1
    trained = load_checkpoint(run / "last.pt")["learners"]
    dtype = torch.float64 if float64 else torch.float32
    assert all(t.dtype == dtype for t in trained["student"]["model"].values() if t.is_floating_point())

    assert cli.main(["compat", "export", str(run / "last.pt"), str(tmp_path / "out.pth")]) == 0
    exported = torch.load(tmp_path / "out.pth", weights_only=True)
    assert set(exported) == {"teacher_model", "student_model"}
    fresh = pair(*registered)
    if float64:
        fresh = {name: model.double() for name, model in fresh.items()}
    assert set(exported["student_model"]) == set(fresh["student"].state_dict())
    assert init_weights(tmp_path / "out.pth", fresh) == ["student", "teacher"]
    for name, model in fresh.items():
        for key, tensor in model.state_dict().items():
            assert torch.equal(tensor, trained[name]["model"][key]), (name, key)


@pytest.mark.parametrize("key", ["model.student", "model.teacher"])
def test_a_fixed_size_vit_on_64_pixel_data_is_refused_before_training(key):
    """`fastkd train` (no compat): the small CIFAR ViT on Tiny-ImageNet is one config line, not a forward error."""
    from fastkd.config import load_config
    from fastkd.errors import ConfigError
    from fastkd.methods import build_method

    other = "model.teacher=resnet18" if key == "model.student" else "model.student=resnet18"
    cfg = load_config(None, ["method=online_kd", "data.dataset=tiny_imagenet", f"{key}=vit_cifar", other])
    with pytest.raises(ConfigError, match=rf"^{key}: vit_cifar takes 32x32 images and tiny_imagenet has 64x64"):
        build_method(cfg, 10).build_models(cfg, 200)
    cifar = load_config(None, ["method=online_kd", "data.dataset=cifar100", f"{key}=vit_cifar", other])
    assert set(build_method(cifar, 10).build_models(cifar, 100)) == {"teacher", "student"}
