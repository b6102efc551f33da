"""Reference checkpoint layouts load through `init_from` (init_weights), and `fastkd compat export` writes them back."""

from __future__ import annotations

import pytest
import torch

from fastkd import cli
from fastkd.errors import CheckpointError
from fastkd.models import StudentNet, TeacherNet, create_model
from fastkd.reference.errors import CompatError
from fastkd.reference.keys import export_reference_checkpoint, init_weights, selfkd_from_reference, selfkd_to_reference


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
