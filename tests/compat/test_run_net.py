"""`fastkd compat run_net --mode train --cfg FILE.yaml [KEY VALUE ...]` on YAML fixtures in the reference's pycls key
layout: mapped, ignored and refused keys, and the configs/paper/vit grid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fastkd import cli
from fastkd.config import load_config
from fastkd.reference.errors import CompatError
from fastkd.reference.run_net import translate_command_line

PAPER_VIT = Path(__file__).parents[2] / "configs" / "paper" / "vit"

# deit-ti_c100_space_1_0.yaml as the reference writes it (vit/configs/deit/)
DEIT_SPACE = """\
MODEL:
  TYPE: DeiT
  NUM_CLASSES: 100
TRANSFORMER:
  PATCH_SIZE: 16
  HIDDEN_DIM: 192
  DEPTH: 12
  NUM_HEADS: 3
  MLP_RATIO: 4
  DROP_RATE: 0.0
  DROP_PATH_RATE: 0.1
  ATTENTION_DROP_RATE: 0.0
CNN:
  DEPTH: 56
RESNET:
  TRANS_FUN: basic_transform
DISTILLATION:
  ENABLE_INTER: False
  INTER_TRANSFORM: linear
  INTER_TEACHER_INDEX: [0, 1, 2]
  INTER_STUDENT_INDEX: [0, 6, 11]
  INTER_WEIGHT: 2.5
  ENABLE_LOGIT: True
  LOGIT_LOSS: "soft"
  LOGIT_TEMP: 1.0
  LOGIT_WEIGHT: 0.5
  TEACHER_MODEL: DeiT
  TEACHER_IMG_SIZE: 224
  ONLINE: False
  SPACE: True
  SPACE_INTERVAL: {interval}
OPTIM:
  OPTIMIZER: adamw
  BASE_LR: 5.0e-4
  MIN_LR: 5.0e-6
  LR_POLICY: cos
  MAX_EPOCH: 300
  WEIGHT_DECAY: 0.05
  WARMUP_FACTOR: 0.001
  WARMUP_EPOCHS: 20
TRAIN:
  DATASET: {dataset}
  SPLIT: train
  BATCH_SIZE: 128
TEST:
  DATASET: {dataset}
  SPLIT: test
  BATCH_SIZE: 200
NUM_GPUS: 4
DATA_LOADER:
  NUM_WORKERS: 4
CUDNN:
  BENCHMARK: False
"""


def write(tmp_path: Path, text: str, name: str = "deit-ti_c100_space_1_0.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def deit(tmp_path: Path, interval: float = 1.0, dataset: str = "cifar100", name: str = "deit-ti_c100_space_1_0.yaml"):
    return write(tmp_path, DEIT_SPACE.format(interval=interval, dataset=dataset), name)


def test_every_honoured_key_is_mapped(tmp_path):
    translation = translate_command_line(["--mode", "train", "--cfg", deit(tmp_path), "TRAIN.BATCH_SIZE", "16",
                                          "OPTIM.MAX_EPOCH", "1", "MODEL.IMG_SIZE", "32", "RNG_SEED", "5"])
    raw = translation.raw
    assert raw["method"] == "vit_spaced_kd" and raw["semantics"] == "reference" and raw["seed"] == 5
    assert raw["model"] == {"student": "deit_tiny", "teacher": "deit_tiny"}
    assert raw["data"] == {"dataset": "cifar100", "batch_size": 16, "eval_batch_size": 200, "drop_last": True,
                           "image_size": 32}
    assert raw["optim"] == {"name": "adamw", "lr": 5e-4, "min_lr": 5e-6, "weight_decay": 0.05, "betas": [0.9, 0.999],
                            "schedule": "warmup_cosine", "warmup_epochs": 20, "warmup_factor": 0.001}
    assert raw["train"] == {"epochs": 1}
    assert raw["vit"] == {"drop_path_rate": 0.1, "logit_weight": 0.5, "temperature": 1.0, "teacher_img_size": None,
                          "interval": 1.0}
    assert any(note.startswith("DISTILLATION.TEACHER_IMG_SIZE 224: the teacher runs at MODEL.IMG_SIZE 32")
               for note in translation.notes)


def test_environment_keys_are_ignored_with_one_note_each(tmp_path):
    notes = translate_command_line(["--mode", "train", "--cfg", deit(tmp_path), "OUT_DIR", "/tmp/x"]).notes
    for key in ("NUM_GPUS", "OUT_DIR", "DATA_LOADER.NUM_WORKERS", "CUDNN.BENCHMARK"):
        assert sum(note.startswith(f"{key}: ignored") for note in notes) == 1, key
    assert any(note.startswith("CNN.DEPTH: no effect") for note in notes)
    assert not any("warning" in note for note in notes)


def test_values_are_read_as_yacs_reads_them(tmp_path):
    raw = translate_command_line(["--mode", "train", "--cfg", deit(tmp_path), "OPTIM.BASE_LR", "1", "PORT_RANGE",
                                  "(1, 2)", "DISTILLATION.LOGIT_TEMP", "2.5"]).raw
    assert raw["optim"]["lr"] == 1.0 and raw["vit"]["temperature"] == 2.5


def test_tiny_imagenet_uses_sorted_class_order(tmp_path):
    path = deit(tmp_path, dataset="tiny_imagenet")
    raw = translate_command_line(["--mode", "train", "--cfg", path, "MODEL.NUM_CLASSES", "200"]).raw
    assert raw["data"]["dataset"] == "tiny_imagenet" and raw["data"]["class_order"] == "sorted"


def test_interval_that_disagrees_with_the_file_name_runs_as_written_with_a_warning(tmp_path):
    path = deit(tmp_path, interval=1.0, name="pit-ti_c100_space_1_5.yaml")
    translation = translate_command_line(["--mode", "train", "--cfg", path])
    assert translation.raw["vit"]["interval"] == 1.0
    assert [n for n in translation.notes if n.startswith("warning")] == [
        "warning: pit-ti_c100_space_1_5.yaml is named for interval 1.5 but sets DISTILLATION.SPACE_INTERVAL 1.0; "
        "running 1.0 as the file says"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["MODEL.FOO", "1"], "MODEL.FOO is not a pycls config key"),
    (["DISTILLATION.ENABLE_INTER", "True"], "DISTILLATION.ENABLE_INTER True"),
    (["OPTIM.OPTIMIZER", "sgd"], "OPTIM.OPTIMIZER 'sgd'"),
    (["TRANSFORMER.HIDDEN_DIM", "256"], "TRANSFORMER.HIDDEN_DIM 256: fastkd builds deit_tiny"),
    (["MODEL.NUM_CLASSES", "10"], "cifar100 has 100 classes"),
    (["DISTILLATION.TEACHER_MODEL", "ResNet"], "DISTILLATION.TEACHER_MODEL 'ResNet'"),
    (["TRAIN.MIXUP_ALPHA", "0.8"], "TRAIN.MIXUP_ALPHA 0.8"),
    (["MODEL.TYPE", "ResNet"], "MODEL.TYPE 'ResNet'"),
    (["TRAIN.BATCH_SIZE"], "KEY VALUE pairs"),
    (["TRAIN.BATCH_SIZE", "many"], "TRAIN.BATCH_SIZE 'many': expected type int"),
    (["DISTILLATION.SPACE", "1"], "DISTILLATION.SPACE 1: expected type bool"),
    (["OPTIM.BASE_LR", "fast"], "OPTIM.BASE_LR 'fast': expected type float"),
    (["TRANSFORMER.DROP_PATH_RATE", "high"], "TRANSFORMER.DROP_PATH_RATE 'high': expected a number"),
])
def test_unsupported_keys_are_refused_with_one_line(tmp_path, overrides, message):
    with pytest.raises(CompatError, match=message) as error:
        translate_command_line(["--mode", "train", "--cfg", deit(tmp_path), *overrides])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("argv", "message"), [
    (["--mode", "test", "--cfg", "x.yaml"], "--mode test"),
    (["--cfg", "x.yaml"], "--mode"),
    (["--mode", "train"], "--cfg FILE.yaml is required"),
    (["--mode", "train", "--cfg", "missing.yaml"], "cannot be read"),
    (["--mode", "train", "--cfg", "x.yaml", "--opts"], "unknown flag --opts"),
])
def test_bad_command_lines_are_refused(argv, message):
    with pytest.raises(CompatError, match=message):
        translate_command_line(argv)


def test_offline_needs_teacher_weights_and_maps_them(tmp_path):
    text = DEIT_SPACE.format(interval=0.0, dataset="cifar100").replace("SPACE: True", "SPACE: False")
    path = write(tmp_path, text, "deit-ti_c100_offline.yaml")
    with pytest.raises(CompatError, match="TEACHER_WEIGHTS"):
        translate_command_line(["--mode", "train", "--cfg", path])
    raw = translate_command_line(["--mode", "train", "--cfg", path, "DISTILLATION.TEACHER_WEIGHTS", "t.pyth"]).raw
    assert raw["method"] == "vit_offline_kd" and raw["vit"]["teacher_weights"] == "t.pyth"


def test_base_config_without_distillation_section(tmp_path):
    text = DEIT_SPACE.format(interval=1.0, dataset="cifar100").split("DISTILLATION:")[0] + \
        "OPTIM:" + DEIT_SPACE.split("OPTIM:")[1].format(dataset="cifar100")
    raw = translate_command_line(["--mode", "train", "--cfg", write(tmp_path, text, "deit-ti_c100_base.yaml")]).raw
    assert raw["method"] == "vit_base" and "logit_weight" not in raw["vit"]


def test_cli_print_config_is_the_validated_fastkd_config(tmp_path, capsys):
    argv = ["compat", "run_net", "--mode", "train", "--cfg", deit(tmp_path), "TRAIN.BATCH_SIZE", "16",
            "--print-config", "--data-root", str(tmp_path)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    printed = yaml.safe_load(captured.out)
    assert printed["method"] == "vit_spaced_kd" and printed["data"]["batch_size"] == 16
    assert printed["data"]["root"] == str(tmp_path) and printed["data"]["drop_last"] is True
    assert "NUM_GPUS: ignored" in captured.err


def test_cli_refusal_is_one_line_exit_2(tmp_path, capsys):
    assert cli.main(["compat", "run_net", "--mode", "train", "--cfg", deit(tmp_path), "OPTIM.LR_POLICY", "steps"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fastkd: error: OPTIM.LR_POLICY 'steps'") and "Traceback" not in "".join(err)


PAPER_FILES = sorted(PAPER_VIT.rglob("*.yaml"))


def test_paper_grid_has_every_reference_vit_experiment():
    names = {str(p.relative_to(PAPER_VIT)) for p in PAPER_FILES}
    variants = ("base", "online", "offline", "s0.5", "s1.0", "s1.5", "s2.0")
    for arch in ("deit_tiny", "pit_ti", "pvt_tiny", "pvt_v2_b0"):
        assert {f"cifar100/{arch}_{v}.yaml" for v in variants} <= names
    for arch in ("deit_tiny", "pit_ti"):
        assert {f"tiny_imagenet/{arch}_{v}.yaml" for v in variants} <= names
    assert {f"cifar100/t2t_vit_7_{v}.yaml" for v in variants[:5]} <= names
    assert {"cifar100/t2t_vit_14_base.yaml", "cifar100/convit_tiny_base.yaml", "cifar100/cvt_13_base.yaml"} <= names
    assert len(names) == 4 * 7 + 2 * 7 + 5 + 3


@pytest.mark.parametrize("path", PAPER_FILES, ids=lambda p: str(p.relative_to(PAPER_VIT)))
def test_paper_file_loads_with_the_reference_hyper_parameters(path):
    cfg = load_config(path)
    dataset = path.parent.name
    arch, variant = path.stem.rsplit("_", 1)
    assert cfg.semantics == "reference" and cfg.model.student == arch and cfg.data.dataset == dataset
    assert cfg.train.epochs == 300 and cfg.data.batch_size == 128 and cfg.data.drop_last and cfg.seed == 1
    assert cfg.optim.name == "adamw" and cfg.optim.lr == 5e-4 and cfg.optim.schedule == "warmup_cosine"
    assert cfg.data.class_order == ("sorted" if dataset == "tiny_imagenet" else "wnids_file")
    expected = {"base": "vit_base", "online": "vit_online_kd", "offline": "vit_offline_kd"}.get(variant,
                                                                                               "vit_spaced_kd")
    assert cfg.method == expected
    if expected == "vit_spaced_kd":
        written = float(variant[1:])
        assert cfg.vit.interval == (1.0 if arch == "pit_ti" and written > 1.0 else written)


@pytest.mark.parametrize("path", PAPER_FILES, ids=lambda p: str(p.relative_to(PAPER_VIT)))
def test_paper_file_is_its_rendering(path):
    from fastkd.reference.run_net import render_paper_config

    arch, variant = path.stem.rsplit("_", 1)
    assert path.read_text() == render_paper_config(path.parent.name, arch, variant), \
        "regenerate with python -m fastkd.reproduce.experiments"


def test_paper_file_matches_run_net_on_the_reference_yaml(tmp_path):
    """The grid's values, written as a reference YAML and run through run_net, give the paper file's config."""
    from fastkd.config import validate
    from fastkd.reference.run_net import DEFAULTS, paper_reference_values

    values = paper_reference_values("tiny_imagenet", "pit_ti", "s2.0")
    tree: dict = {}
    for key, value in values.items():
        if value != DEFAULTS[key]:
            *sections, leaf = key.split(".")
            node = tree
            for section in sections:
                node = node.setdefault(section, {})
            node[leaf] = value
    path = write(tmp_path, yaml.safe_dump(tree), "pit-ti_t200_space_2_0.yaml")
    translation = translate_command_line(["--mode", "train", "--cfg", path])
    assert any(note.startswith("warning: pit-ti_t200_space_2_0.yaml is named for interval 2.0") for note in
               translation.notes)
    translation.raw |= {"name": "vit_tiny_imagenet_pit_ti_s2.0"}
    translation.raw["data"]["root"] = None
    assert validate(translation.raw, "test") == load_config(PAPER_VIT / "tiny_imagenet" / "pit_ti_s2.0.yaml")


def test_mixed_precision_maps_to_float16_autocast(tmp_path):
    raw = translate_command_line(["--mode", "train", "--cfg", deit(tmp_path), "TRAIN.MIXED_PRECISION", "True"]).raw
    assert raw["train"] == {"epochs": 300, "amp": "fp16"}


def test_help_lists_the_usage(capsys):
    assert cli.main(["compat", "run_net", "-h"]) == 0
    assert "--mode train --cfg FILE.yaml [KEY VALUE ...]" in capsys.readouterr().out
