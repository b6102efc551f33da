"""Reference checkpoint layouts load through `init_from` (init_weights), and `fastkd compat export` writes them back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fastkd import cli
from fastkd.errors import CheckpointError
from fastkd.models import StudentNet, TeacherNet, create_model
from fastkd.reference.errors import CompatError
from fastkd.reference.keys import (
    add_module_prefix, export_reference_checkpoint, init_weights, selfkd_from_reference, selfkd_to_reference,
    strip_module_prefix,
)


def assert_same_state(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert set(state) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key


def narrow(name: str) -> torch.nn.Module:
    return create_model(name, num_classes=10, downsample_factor=64.0)


def online_pair(seed: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    teacher = TeacherNet(narrow("resnet18"))
    return {"teacher": teacher, "student": StudentNet(narrow("resnet18"), teacher.feature_size)}


def test_ema_file_loads_into_the_plain_model_and_into_kd_wrappers(tmp_path):
    torch.manual_seed(0)
    trained = narrow("resnet18").state_dict()
    path = tmp_path / "ema_cifar100_resnet18_spaced_0.1_alpha_0.99.pkl"
    torch.save({"model": trained}, path)  # what train_EMA.py writes (the raw model, docs/semantics.md §6)
    plain = {"model": narrow("resnet18")}
    assert init_weights(path, plain) == ["model"]
    assert_same_state(plain["model"], trained)
    pair = online_pair(1)
    assert init_weights(path, pair) == ["student", "teacher"]  # a bare backbone goes into every `net` it fits
    assert torch.equal(pair["teacher"].net.fc.weight, trained["fc.weight"])


def test_dropout_file_loads(tmp_path):
    torch.manual_seed(0)
    trained = create_model("dropout_resnet18", num_classes=10).state_dict()
    torch.save({"model": trained}, tmp_path / "cifar100_resnet18_spaced_1.0_SpacedDropout_0.5.pkl")
    fresh = {"model": create_model("dropout_resnet18", num_classes=10)}
    init_weights(tmp_path / "cifar100_resnet18_spaced_1.0_SpacedDropout_0.5.pkl", fresh)
    assert_same_state(fresh["model"], trained)


def test_self_kd_dataparallel_state_and_unwrapped_state_load(tmp_path):
    torch.manual_seed(0)
    trained = create_model("selfkd_resnet18", num_classes=10).state_dict()
    reference = selfkd_to_reference(trained, data_parallel=True)  # net.state_dict() in the script
    assert any(k.startswith("module.layer1.") for k in reference) and "adaptation_layers.0.weight" in reference
    torch.save(reference, tmp_path / "wrapped.pth")
    fresh = {"model": create_model("selfkd_resnet18", num_classes=10)}
    init_weights(tmp_path / "wrapped.pth", fresh)
    assert_same_state(fresh["model"], trained)

    # net.module.state_dict(): no adaptation layers (they live on the wrapper); fastkd keeps its fresh ones.
    torch.save({k: v for k, v in trained.items() if not k.startswith("adaptation_layers.")}, tmp_path / "bare.pth")
    fresh = {"model": create_model("selfkd_resnet18", num_classes=10)}
    own_adaptation = fresh["model"].adaptation_layers[1].weight.clone()
    init_weights(tmp_path / "bare.pth", fresh)
    assert torch.equal(fresh["model"].layer4[0].conv1.weight, trained["layer4.0.conv1.weight"])
    assert torch.equal(fresh["model"].adaptation_layers[1].weight, own_adaptation)


def test_online_kd_reference_pair_loads(tmp_path):
    trained = {name: m.state_dict() for name, m in online_pair(0).items()}
    torch.save({"teacher_model": trained["teacher"], "student_model": trained["student"]}, tmp_path / "pair.pth")
    fresh = online_pair(1)
    assert init_weights(tmp_path / "pair.pth", fresh) == ["student", "teacher"]
    for name, model in fresh.items():
        assert_same_state(model, trained[name])


def test_mismatched_file_names_the_models(tmp_path):
    torch.save({"model": create_model("dropout_resnet18", num_classes=10).state_dict()}, tmp_path / "d.pkl")
    with pytest.raises(CheckpointError, match="match none of the models"):
        init_weights(tmp_path / "d.pkl", {"model": narrow("resnet18")})


def fastkd_payload(method: str, models: dict[str, torch.nn.Module]) -> dict:
    return {"version": 1, "config": {"method": method},
            "learners": {name: {"model": m.state_dict()} for name, m in models.items()}}


@pytest.mark.parametrize("method", ["spaced_dropout", "dropout"])
def test_export_dropout_round_trip(method):
    model = create_model("dropout_resnet18", num_classes=10)
    exported = export_reference_checkpoint(fastkd_payload(method, {"model": model}))
    assert set(exported) == {"model"}
    assert set(exported["model"]) == set(model.state_dict())


def test_export_self_kd_is_the_dataparallel_layout():
    model = create_model("selfkd_resnet18", num_classes=10)
    exported = export_reference_checkpoint(fastkd_payload("spaced_self_kd", {"model": model}))
    assert "module.fc4.weight" in exported and "adaptation_layers.2.bias" in exported
    assert_same_state(model, selfkd_from_reference(exported))


def test_export_ema_and_online_kd_reload(tmp_path):
    model = narrow("resnet50")
    exported = export_reference_checkpoint(fastkd_payload("spaced_ema", {"model": model}))
    assert set(exported) == {"model"}
    pair = online_pair(0)
    exported = export_reference_checkpoint(fastkd_payload("spaced_online_kd", pair))
    assert set(exported) == {"teacher_model", "student_model"}
    torch.save(exported, tmp_path / "pair.pth")
    fresh = online_pair(1)
    init_weights(tmp_path / "pair.pth", fresh)
    assert_same_state(fresh["student"], pair["student"].state_dict())


def test_export_rejects_non_fastkd_files(tmp_path, capsys):
    with pytest.raises(CompatError, match="not a fastkd run checkpoint"):
        export_reference_checkpoint({"model": {}})
    assert cli.main(["compat", "export", str(tmp_path / "missing.pt")]) == 2
    assert "usage: fastkd compat export" in capsys.readouterr().err


SMALL_NETS_REFERENCE = json.loads((Path(__file__).parents[1] / "models" / "cifar_small_nets_reference_keys.json")
                                  .read_text())
SMALL_NETS_FEATURE_SIZES = {"mobilenet": 1024, "mobilenetv2": 1280, "shufflenet": 960, "shufflenetv2": 1024,
                            "vit": 384}


@pytest.mark.parametrize("reference_name", ["mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2", "vit"])
def test_online_kd_dataparallel_pair_of_the_other_nets_loads_and_exports_back(tmp_path, reference_name):
    """A teacher/student pair saved from the reference's DataParallel-wrapped wrappers, with keys written from its
    module structure (``module.net.<key>``, the student's projector ``module.linear{1,2}``), loads into fastkd's
    models and exports back to the same names."""
    entry = SMALL_NETS_REFERENCE[reference_name]
    generator = torch.Generator().manual_seed(0)

    def filled(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
        return {key: torch.randn(shape, generator=generator) if shape else torch.tensor(7)
                for key, shape in shapes.items()}

    net = {f"net.{key}": shape for key, shape in entry["keys"].items()}
    feature = SMALL_NETS_FEATURE_SIZES[reference_name]
    hidden = feature  # teacher and student are the same network here: int((f + f) / 2) = f
    projector = {"linear1.weight": [hidden, feature], "linear1.bias": [hidden],
                 "linear2.weight": [feature, hidden], "linear2.bias": [feature]}
    reference = {"teacher_model": add_module_prefix(filled(net)),
                 "student_model": add_module_prefix(filled(net | projector))}
    torch.save(reference, tmp_path / "pair.pth")

    teacher = TeacherNet(create_model(entry["model"], num_classes=100))
    fresh = {"teacher": teacher, "student": StudentNet(create_model(entry["model"], num_classes=100),
                                                       teacher.feature_size)}
    assert init_weights(tmp_path / "pair.pth", fresh) == ["student", "teacher"]
    for name, model in fresh.items():
        assert_same_state(model, strip_module_prefix(reference[f"{name}_model"]))

    exported = export_reference_checkpoint(fastkd_payload("spaced_online_kd", fresh))
    for name in ("teacher", "student"):
        assert list(exported[f"{name}_model"]) == list(strip_module_prefix(reference[f"{name}_model"]))
