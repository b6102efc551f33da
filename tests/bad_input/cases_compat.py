"""Bad input to `fastkd compat`: unknown or abbreviated flags, non-numbers and non-finite numbers, out-of-range
values, and `compat export` of the wrong file or to a place that cannot be written."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from case import BadInput

ONLINE = ["compat", "train_space", "-net_teacher", "resnet18", "-net_student", "resnet18", "--print-config"]
EMA = ["compat", "ema", "-net", "resnet18", "--print-config"]
SELF_KD = ["compat", "self_kd", "--print-config"]
DROPOUT = ["compat", "dropout", "--dataset", "cifar100", "--print-config"]


def _argv(base: list[str], *flags: str) -> Callable[[Path], list[str]]:
    """A case whose argv needs no files: the base command plus `flags`."""
    return lambda tmp: [*base, *flags]


def _run_checkpoint(tmp: Path, method: str = "ema") -> Path:
    """A minimal fastkd run checkpoint (learners + config), enough for `compat export` to convert."""
    path = tmp / "run.pt"
    torch.save({"learners": {"model": {"model": {"fc.weight": torch.zeros(2, 2)}}}, "config": {"method": method}},
               path)
    return path


def _export_to(target: Callable[[Path], str]) -> Callable[[Path], list[str]]:
    return lambda tmp: ["compat", "export", str(_run_checkpoint(tmp)), target(tmp)]


PYCLS_DEIT = """MODEL:
  TYPE: DeiT
  NUM_CLASSES: 100
TRANSFORMER:
  PATCH_SIZE: 16
  HIDDEN_DIM: 192
  DEPTH: 12
  NUM_HEADS: 3
  MLP_RATIO: 4
DISTILLATION:
  ENABLE_LOGIT: True
  TEACHER_MODEL: DeiT
  SPACE: True
  SPACE_INTERVAL: 1.0
OPTIM:
  OPTIMIZER: adamw
TRAIN:
  DATASET: cifar100
"""
"""A pycls DeiT-Ti spaced-KD config in the ViT reference's key layout."""


def _run_net_bytes(data: bytes) -> Callable[[Path], list[str]]:
    """`fastkd compat run_net` on a --cfg file holding raw bytes (binary, or text in another encoding)."""
    def argv(tmp: Path) -> list[str]:
        path = tmp / "deit-ti_c100_space_1_0.yaml"
        path.write_bytes(data)
        return ["compat", "run_net", "--mode", "train", "--cfg", str(path), "--print-config"]
    return argv


def _run_net(text: str, *extra: str) -> Callable[[Path], list[str]]:
    """`fastkd compat run_net` on a pycls YAML file holding ``text``, plus ``extra`` arguments."""
    def argv(tmp: Path) -> list[str]:
        path = tmp / "deit-ti_c100_space_1_0.yaml"
        path.write_text(text)
        return ["compat", "run_net", "--mode", "train", "--cfg", str(path), *extra, "--print-config"]
    return argv


def _file(tmp: Path, name: str = "a_file") -> Path:
    path = tmp / name
    path.write_text("not a folder\n")
    return path


def _folder(tmp: Path) -> Path:
    path = tmp / "a_folder"
    path.mkdir()
    return path


def _export_from(write: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def argv(tmp: Path) -> list[str]:
        write(tmp / "source.pt")
        return ["compat", "export", str(tmp / "source.pt"), str(tmp / "out.pt")]
    return argv


NOT_FINITE = r"is not a finite number; give a finite value"

CASES: list[BadInput] = [
    # unknown flags are named as given, never read as another flag's abbreviation
    BadInput("compat-unknown-flag-glued-to-short-flag", "compat", _argv(ONLINE, "-bogus", "1"),
             r"unrecognized arguments: -bogus 1 \(unknown flag '-bogus'"),
    BadInput("compat-single-dash-abbreviation", "compat", _argv(ONLINE, "-l", "0.1"),
             r"unknown flag '-l'.*did you mean -lr\?"),
    BadInput("compat-short-flag-with-glued-value", "compat", _argv(ONLINE, "-b4"), r"unknown flag '-b4'"),
    BadInput("compat-misspelt-long-flag", "compat", _argv(DROPOUT, "--batch_sizes", "64"),
             r"unknown flag '--batch_sizes'.*did you mean --batch_size\?"),
    BadInput("compat-other-scripts-flag", "compat", _argv(SELF_KD, "-interval_rate", "1.0"),
             r"unknown flag '-interval_rate'"),
    BadInput("compat-unknown-script", "compat", lambda tmp: ["compat", "train_spaced"],
             r"unknown script 'train_spaced'; choose one of: train_space"),
    BadInput("compat-valued-fastkd-flag-without-value", "compat", _argv(ONLINE, "--semantics"),
             r"--semantics needs a value"),
    BadInput("compat-flag-without-its-value", "compat",
             lambda tmp: ["compat", "train_space", "-net_teacher", "resnet18", "-net_student"],
             r"argument -net_student: expected one argument"),
    # wandb names wandb would refuse, named by the reference flag that gave them
    BadInput("compat-wandb-project-with-slash", "compat", _argv(ONLINE, "-wandb_project", "a/b"),
             r"train_space: -wandb_project a/b: must be a wandb name: 1 to 128 characters"),
    BadInput("compat-self-kd-wandb-entity-with-colon", "compat", _argv(SELF_KD, "--wandb_entity", "a:b"),
             r"self_kd: --wandb_entity a:b: must be a wandb name"),
    # non-finite numbers
    BadInput("compat-dropout-space-nan", "compat", _argv(DROPOUT, "--space", "nan"), rf"--space: 'nan' {NOT_FINITE}"),
    BadInput("compat-dropout-space-inf", "compat", _argv(DROPOUT, "--drop_method", "SpacedDropout", "--space", "inf"),
             rf"--space: 'inf' {NOT_FINITE}"),
    BadInput("compat-dropout-length-inf", "compat", _argv(DROPOUT, "--cutout_input", "--length", "inf"),
             rf"--length: 'inf' {NOT_FINITE}"),
    BadInput("compat-dropout-drop-minus-inf", "compat", _argv(DROPOUT, "--drop", "-inf"),
             rf"--drop: '-inf' {NOT_FINITE}"),
    BadInput("compat-interval-rate-inf", "compat", _argv(ONLINE, "-interval_rate", "inf"),
             rf"-interval_rate: 'inf' {NOT_FINITE}"),
    BadInput("compat-interval-rate-overflows-to-inf", "compat", _argv(ONLINE, "-interval_rate", "1e400"),
             rf"-interval_rate: '1e400' {NOT_FINITE}"),
    BadInput("compat-lr-nan", "compat", _argv(ONLINE, "-lr", "nan"), rf"-lr: 'nan' {NOT_FINITE}"),
    BadInput("compat-ema-interval-inf", "compat", _argv(EMA, "-interval", "inf"), rf"-interval: 'inf' {NOT_FINITE}"),
    BadInput("compat-ema-alpha-nan", "compat", _argv(EMA, "-alpha", "NaN"), rf"-alpha: 'NaN' {NOT_FINITE}"),
    BadInput("compat-self-kd-interval-nan", "compat", _argv(SELF_KD, "--interval_rate", "nan"),
             rf"--interval_rate: 'nan' {NOT_FINITE}"),
    BadInput("compat-self-kd-loss-coefficient-inf", "compat", _argv(SELF_KD, "--loss_coefficient", "inf"),
             rf"--loss_coefficient: 'inf' {NOT_FINITE}"),
    # strings and odd values for numeric flags
    BadInput("compat-batch-size-word", "compat", _argv(ONLINE, "-b", "many"),
             r"argument -b: invalid int value: 'many'"),
    BadInput("compat-batch-size-float-notation", "compat", _argv(ONLINE, "-b", "1e3"),
             r"argument -b: invalid int value: '1e3'"),
    BadInput("compat-lr-empty", "compat", _argv(ONLINE, "-lr", ""), r"argument -lr: invalid float value: ''"),
    BadInput("compat-alpha-word", "compat", _argv(EMA, "-alpha", "high"), r"argument -alpha: invalid float value"),
    BadInput("compat-epochs-fraction", "compat", _argv(DROPOUT, "--epochs", "1.5"),
             r"argument --epochs: invalid int value: '1.5'"),
    BadInput("compat-drop-method-unknown", "compat", _argv(DROPOUT, "--drop_method", "Foo"),
             r"argument --drop_method: invalid choice: 'Foo'"),
    # out-of-range numbers: refused by the config schema, named by key
    BadInput("compat-batch-size-zero", "compat", _argv(SELF_KD, "--batchsize", "0"), r"data\.batch_size"),
    BadInput("compat-batch-size-negative", "compat", _argv(ONLINE, "-b", "-5"), r"data\.batch_size"),
    BadInput("compat-epochs-zero", "compat", _argv(ONLINE, "-epoch", "0"), r"train\.epochs"),
    BadInput("compat-lr-negative", "compat", _argv(ONLINE, "-lr", "-0.1"), r"optim\.lr"),
    BadInput("compat-kd-alpha-above-one", "compat", _argv(ONLINE, "-alpha", "2"), r"kd\.alpha"),
    BadInput("compat-temperature-zero", "compat", _argv(ONLINE, "-temp", "0"), r"kd\.temperature"),
    BadInput("compat-ema-decay-above-one", "compat", _argv(EMA, "-alpha", "1.5"), r"ema\.decay"),
    BadInput("compat-ema-interval-negative", "compat", _argv(EMA, "-interval", "-1"), r"ema\.interval"),
    BadInput("compat-drop-rate-above-one", "compat", _argv(DROPOUT, "--drop", "1.5"), r"dropout\.rate"),
    BadInput("compat-space-negative", "compat", _argv(DROPOUT, "--space", "-1"), r"dropout\.space"),
    BadInput("compat-seed-negative", "compat", _argv(DROPOUT, "--seed", "-1"), r"seed"),
    BadInput("compat-seed-huge", "compat", _argv(DROPOUT, "--seed", "99999999999999999999"), r"seed"),
    BadInput("compat-downsample-factor-zero", "compat", _argv(ONLINE, "-downsample_factor", "0"),
             r"model\.downsample_factor"),
    BadInput("compat-spaced-dropout-zero-period", "compat",
             _argv(DROPOUT, "--drop_method", "SpacedDropout", "--space", "0.0001"),
             r"--space 0\.0001: the reference script crashes here"),
    BadInput("compat-set-unbalanced-yaml", "compat", _argv(ONLINE, "--set", "train.epochs=[1"), r"train\.epochs=\[1"),
    # compat export: wrong files in, unwritable places out
    BadInput("compat-export-missing-source", "compat",
             lambda tmp: ["compat", "export", str(tmp / "missing.pt"), str(tmp / "out.pt")], r"no such checkpoint"),
    BadInput("compat-export-source-not-a-checkpoint", "compat",
             _export_from(lambda path: path.write_text("hello\n")), r"not a readable checkpoint"),
    BadInput("compat-export-source-bare-state-dict", "compat",
             _export_from(lambda path: torch.save({"fc.weight": torch.zeros(1)}, path)),
             r"not a fastkd run checkpoint"),
    BadInput("compat-export-source-learners-not-dicts", "compat",
             _export_from(lambda path: torch.save({"learners": {"model": 3}, "config": {"method": "ema"}}, path)),
             r"not a fastkd run checkpoint"),
    BadInput("compat-export-missing-target", "compat",
             lambda tmp: ["compat", "export", str(_run_checkpoint(tmp))], r"usage: fastkd compat export"),
    BadInput("compat-export-target-is-a-folder", "compat", _export_to(lambda tmp: str(_folder(tmp))),
             r"cannot write .*a_folder", exit_code=1),
    BadInput("compat-export-target-under-a-file", "compat", _export_to(lambda tmp: str(_file(tmp) / "out.pt")),
             r"cannot write .*a_file/out\.pt", exit_code=1),
    BadInput("compat-export-target-under-proc", "compat", _export_to(lambda tmp: "/proc/fastkd-export.pt"),
             r"cannot write /proc/fastkd-export\.pt", exit_code=1),
    # compat run_net: pycls YAML files and KEY VALUE overrides
    BadInput("compat-run-net-unknown-key-in-file", "compat", _run_net("MODEL:\n  TYPE: DeiT\n  WIDTH: 3\n"),
             r"MODEL\.WIDTH is not a pycls config key"),
    BadInput("compat-run-net-unknown-override", "compat", _run_net(PYCLS_DEIT, "TRAIN.BATCHSIZE", "16"),
             r"override: TRAIN\.BATCHSIZE is not a pycls config key"),
    BadInput("compat-run-net-refused-key", "compat", _run_net(PYCLS_DEIT, "DISTILLATION.ENABLE_INTER", "True"),
             r"DISTILLATION\.ENABLE_INTER True: fastkd's ViT training supports only False"),
    BadInput("compat-run-net-other-architecture-size", "compat", _run_net(PYCLS_DEIT, "TRANSFORMER.DEPTH", "6"),
             r"TRANSFORMER\.DEPTH 6: fastkd builds deit_tiny"),
    BadInput("compat-run-net-override-without-value", "compat", _run_net(PYCLS_DEIT, "TRAIN.BATCH_SIZE"),
             r"KEY VALUE pairs; TRAIN\.BATCH_SIZE has no value"),
    BadInput("compat-run-net-not-yaml", "compat", _run_net("MODEL: [unclosed\n"), r"not valid YAML"),
    BadInput("compat-run-net-missing-cfg", "compat",
             lambda tmp: ["compat", "run_net", "--mode", "train", "--cfg", str(tmp / "none.yaml")], r"cannot be read"),
    BadInput("compat-run-net-test-mode", "compat",
             lambda tmp: ["compat", "run_net", "--mode", "test", "--cfg", "x.yaml"], r"--mode test: fastkd runs"),
    BadInput("compat-run-net-bad-set", "compat", _run_net(PYCLS_DEIT, "--set", "vit.interval=-1"),
             r"vit\.interval"),
    BadInput("compat-run-net-cfg-binary", "compat", _run_net_bytes(bytes(range(200, 256)) * 4),
             r"--cfg .*: not a UTF-8 text file \(byte 0xc8 at offset 0\)"),
    BadInput("compat-run-net-cfg-latin-1", "compat", _run_net_bytes("MODEL:\n  TYPE: D\u00e9iT\n".encode("latin-1")),
             r"not a UTF-8 text file \(byte 0xe9 at offset 16\); pass a pycls YAML file saved as UTF-8"),
    BadInput("compat-run-net-cfg-duplicate-key", "compat", _run_net(PYCLS_DEIT + "MODEL:\n  NUM_CLASSES: 10\n"),
             r"not valid YAML \(duplicate key 'MODEL' \(keep one\) at line 19"),
    BadInput("compat-run-net-negative-interval", "compat", _run_net(PYCLS_DEIT, "DISTILLATION.SPACE_INTERVAL", "-1.0"),
             r"DISTILLATION\.SPACE_INTERVAL -1\.0: spaced KD needs an interval > 0 epochs"),
    BadInput("compat-run-net-negative-seed", "compat", _run_net(PYCLS_DEIT, "RNG_SEED", "-1"),
             r"seed: Input should be greater than or equal to 0 \(got -1\)"),
    BadInput("compat-run-net-negative-epochs", "compat", _run_net(PYCLS_DEIT, "OPTIM.MAX_EPOCH", "-3"),
             r"train\.epochs: Input should be greater than or equal to 1 \(got -3\)"),
    BadInput("compat-run-net-negative-flag-still-a-flag", "compat", _run_net(PYCLS_DEIT, "-1"),
             r"run_net: unknown flag -1"),
]
