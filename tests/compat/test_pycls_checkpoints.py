"""pycls ViT checkpoints (`.pyth`, student state under `model_state`) load through `init_from` and
`fastkd compat export` writes them, for every reference architecture; the reference's key list comes from
tests/models/vit_reference_keys.json (written from the reference's module structure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fastkd import cli
from fastkd.errors import CheckpointError
from fastkd.models.registry import create_model
from fastkd.reference.keys import PYCLS_STATE_KEY, export_reference_checkpoint, init_weights

REFERENCE_KEYS = json.loads((Path(__file__).parents[1] / "models" / "vit_reference_keys.json").read_text())
ARCHITECTURES = [name for name in REFERENCE_KEYS if name != "_about"]


def build(entry_name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(entry_name.removesuffix("_distilled"), num_classes=100, **REFERENCE_KEYS[entry_name]["kwargs"])


def run_checkpoint(entry_name: str, student: torch.nn.Module, teacher: torch.nn.Module) -> dict:
    """The parts of a fastkd run checkpoint that export reads."""
    return {"config": {"method": "vit_spaced_kd", "model": {"student": entry_name.removesuffix("_distilled")}},
            "epoch": 7, "learners": {"student": {"model": student.state_dict()},
                                     "teacher": {"model": teacher.state_dict()}}}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_export_writes_the_reference_layout_and_init_from_reads_it_back(name, tmp_path):
    student, teacher = build(name, 0), build(name, 1)
    exported = export_reference_checkpoint(run_checkpoint(name, student, teacher))
    reference_state = exported[PYCLS_STATE_KEY]
    expected = REFERENCE_KEYS[name]["keys"]
    assert {key: list(value.shape) for key, value in reference_state.items()} == expected
    assert exported["epoch"] == 7 and exported["test_err"] <= exported["ema_err"]  # pycls picks model_state

    # what pycls' save_checkpoint adds around it must not disturb loading
    path = tmp_path / "model.pyth"
    torch.save({**exported, "optimizer_state": {"state": {}, "param_groups": []}, "cfg": "MODEL:\n  TYPE: x\n"}, path)
    fresh = {"student": build(name, 2), "teacher": build(name, 3)}
    untouched_teacher = {key: value.clone() for key, value in fresh["teacher"].state_dict().items()}
    assert init_weights(path, fresh) == ["student"]  # pycls' state is the DistillationWrapper's student
    state = fresh["student"].state_dict()
    assert set(state) == set(student.state_dict())
    assert all(torch.equal(state[key], value) for key, value in student.state_dict().items())
    assert all(torch.equal(fresh["teacher"].state_dict()[key], value) for key, value in untouched_teacher.items())

    alone = {"net": build(name, 4)}  # a model registered under another name takes it where it fits
    assert init_weights(path, alone) == ["net"]
    assert all(torch.equal(alone["net"].state_dict()[key], value) for key, value in student.state_dict().items())


def test_dataparallel_prefixed_model_state_loads(tmp_path):
    student = build("pit_ti", 0)
    exported = export_reference_checkpoint(run_checkpoint("pit_ti", student, build("pit_ti", 1)))
    prefixed = {f"module.{key}": value for key, value in exported[PYCLS_STATE_KEY].items()}
    path = tmp_path / "model_epoch_0300.pyth"
    torch.save({"epoch": 299, PYCLS_STATE_KEY: prefixed}, path)
    fresh = {"student": build("pit_ti", 2)}
    assert init_weights(path, fresh) == ["student"]
    assert torch.equal(fresh["student"].transformers[1].pool.conv.weight, student.transformers[1].pool.conv.weight)


def test_a_pyth_of_another_architecture_is_refused_with_one_line(tmp_path):
    exported = export_reference_checkpoint(run_checkpoint("pvt_v2_b0", build("pvt_v2_b0", 0), build("pvt_v2_b0", 1)))
    path = tmp_path / "model.pyth"
    torch.save(exported, path)
    with pytest.raises(CheckpointError, match="match none of the models"):
        init_weights(path, {"student": build("deit_tiny", 0)})


def test_compat_export_command_writes_a_pyth(tmp_path, capsys):
    source, target = tmp_path / "best.pt", tmp_path / "model.pyth"
    student = build("deit_tiny", 0)
    torch.save(run_checkpoint("deit_tiny", student, build("deit_tiny", 1)), source)
    assert cli.main(["compat", "export", str(source), str(target)]) == 0
    written = torch.load(target, weights_only=True)
    assert set(written[PYCLS_STATE_KEY]) == set(REFERENCE_KEYS["deit_tiny"]["keys"])
    assert torch.equal(written[PYCLS_STATE_KEY]["layers.11.attn.qkv_transform.weight"],
                       student.blocks[11].attn.qkv.weight)
