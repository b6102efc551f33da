"""Reference command lines -> fastkd configs: the seeds' documented commands verbatim, defaults, and each mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from reference_commands import COMMANDS, reference_argv

from fastkd import cli, runs
from fastkd.reference.compat import resolve
from fastkd.config import ExperimentConfig

ONLINE = ["-net_teacher", "resnet18", "-net_student", "resnet18"]

# Per documented command: the config values it must map to (docs/semantics.md §1, §5-7).
EXPECTED: dict[str, dict[str, object]] = {
    "spacing_generalization README: StandardDropout": {
        "method": "dropout", "dropout.op": "standard", "dropout.rate": 0.5, "dropout.space": 0.0,
        "model.student": "resnet18", "optim.nesterov": True},
    "spacing_generalization README: SpacedDropout": {
        "method": "spaced_dropout", "dropout.op": "standard", "dropout.rate": 0.5, "dropout.space": 1.0,
        "model.student": "resnet18", "optim.nesterov": True},
    "spacing_generalization README: EMA every step": {
        "method": "ema", "ema.interval": 0.0, "ema.decay": 0.99, "model.student": "resnet18"},
    "spacing_generalization README: Spaced EMA": {
        "method": "spaced_ema", "ema.interval": 0.1, "ema.decay": 0.99, "model.student": "resnet18"},
    "spacing_generalization README: Spaced online KD": {
        "method": "spaced_online_kd", "kd.interval": 1.5, "kd.alpha": 0.3, "kd.temperature": 3.0, "kd.beta": 0.03,
        "kd.feature_loss": "dist", "model.teacher": "resnet18", "model.student": "resnet18", "optim.nesterov": False},
    "spacing_generalization README: Spaced self KD": {
        "method": "spaced_self_kd", "kd.interval": 4.0, "kd.alpha": 0.3, "kd.beta": 0.03, "kd.temperature": 3.0,
        "model.student": "resnet18", "optim.nesterov": False},
    "Spaced-KD README: Spaced online KD": {
        "method": "spaced_online_kd", "kd.interval": 1.5, "kd.alpha": 0.3, "model.teacher": "resnet18"},
    "Spaced-KD README: Spaced self KD": {"method": "spaced_self_kd", "kd.interval": 4.0},
    "online_KD/run.sh: online KD": {"method": "online_kd", "kd.interval": 0.0, "model.downsample_factor": 1.0},
    "online_KD/run.sh: Spaced online KD": {"method": "spaced_online_kd", "kd.interval": 1.5},
    "self_KD/self.sh: self KD": {"method": "self_kd", "kd.interval": 0.0},
    "self_KD/self.sh: Spaced self KD": {"method": "spaced_self_kd", "kd.interval": 4.0},
}
# Every documented command: CIFAR-100, batch 128, 80 epochs, LR 0.01, SGD momentum 0.9 wd 5e-4, constant LR.
COMMON = {"semantics": "reference", "data.dataset": "cifar100", "data.batch_size": 128, "train.epochs": 80,
          "optim.name": "sgd", "optim.lr": 0.01, "optim.momentum": 0.9, "optim.weight_decay": 5e-4,
          "optim.schedule": "constant"}


def value(cfg: ExperimentConfig, dotted: str) -> object:
    node: object = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize("source,script,command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_documented_command_maps_to_expected_config(source, script, command):
    resolved = resolve(script, reference_argv(command))
    for key, expected in {**COMMON, **EXPECTED[source]}.items():
        assert value(resolved.config, key) == expected, key
    # Environment-only flags are explained, one line each; the wandb flags map onto log.wandb.
    dash = "-" if script in ("ema", "train_kd", "train_space") else "--"
    for flag, explained in (("gpu_ids", "ignored"), ("wandb_entity", "log.wandb.entity"),
                            ("wandb_project", "log.wandb.*")):
        given = [n for n in resolved.notes if n.lstrip("-").startswith(flag)]
        if f"{dash}{flag}" in command:
            assert len(given) == 1 and explained in given[0], (flag, resolved.notes)
    if f"{dash}wandb_project" in command:
        assert resolved.config.log.wandb.name == resolved.config.name  # the reference's own run name
        assert resolved.config.train.log_every_step  # the reference logs every step's losses
    else:
        assert resolved.config.log.wandb.project is None


def test_readme_online_kd_explains_every_environment_flag():
    argv = reference_argv(COMMANDS[6][2])
    notes = resolve("train_space", argv).notes
    assert [n.split(":")[0] for n in notes] == ["-gpu", "-gpu_ids 0", "-wandb_entity [your_wandb_entity]",
                                               "-wandb_project [your_wandb_project]"]
    assert all(n.count("\n") == 0 for n in notes)
    assert "gpu_ids 0: ignored: fastkd" in notes[1]


def test_reference_defaults_apply_when_flags_are_absent():
    online = resolve("train_space", ONLINE).config
    assert (online.method, online.kd.interval, online.optim.lr, online.train.epochs, online.data.batch_size) == \
        ("spaced_online_kd", 1.0, 0.1, 80, 128)
    assert (online.kd.alpha, online.kd.beta, online.kd.temperature, online.kd.feature_loss) == (0.3, 0.03, 3.0, "dist")
    ema = resolve("ema", ["-net", "resnet50"]).config
    assert (ema.method, ema.ema.interval, ema.ema.decay, ema.optim.lr, ema.model.student) == \
        ("spaced_ema", 1.0, 0.999, 0.01, "resnet50")
    assert ema.name == "ema_cifar100_resnet50_spaced_1_alpha_0.999"  # the reference's int default 1 in its run name
    self_kd = resolve("self_kd", []).config
    assert (self_kd.method, self_kd.kd.interval, self_kd.optim.lr, self_kd.model.student) == \
        ("spaced_self_kd", 1.0, 0.01, "resnet18")
    dropout = resolve("dropout", ["--dataset", "cifar100"]).config
    assert (dropout.method, dropout.dropout.op, dropout.dropout.rate, dropout.dropout.space, dropout.seed) == \
        ("dropout", "max", 0.3, 10.0, 0)


@pytest.mark.parametrize("rate,method", [(0.0, "online_kd"), (0.001, "spaced_online_kd"), (2.0, "spaced_online_kd"),
                                         (50.0, "offline_kd"), (100.0, "offline_kd")])
def test_interval_rate_selects_the_reference_mode(rate, method):
    assert resolve("train_space", ONLINE + ["-interval_rate", str(rate)]).config.method == method


def test_tiny_rate_is_online_in_the_plan():
    cfg = resolve("train_space", ONLINE + ["-interval_rate", "0.001"]).config
    plan = runs.build_plan(cfg)
    assert plan.interval == 0 and any("online KD" in n for n in plan.notes)


def test_lr_decay_is_reproduced_literally_or_fixed_under_standard():
    ref = resolve("train_space", ONLINE + ["-lr_decay", "-epoch", "10"])
    assert (ref.config.train.epochs, ref.config.optim.schedule) == (200, "constant")
    assert any(n.startswith("-lr_decay: reproduced literally") for n in ref.notes)
    assert any(n.startswith("-epoch 10: overridden") for n in ref.notes)
    std = resolve("train_space", ONLINE + ["-lr_decay", "--semantics", "standard"]).config
    assert (std.semantics, std.train.epochs, std.optim.schedule, std.optim.milestones, std.optim.gamma) == \
        ("standard", 200, "multistep", [60, 120, 160], 0.2)
    assert std.name.endswith("_standard")
    ema = resolve("ema", ["-net", "resnet18", "-lr_decay"])
    assert (ema.config.train.epochs, ema.config.optim.schedule) == (80, "constant")
    assert any("-lr_decay: no effect in the reference" in n for n in ema.notes)


def test_imagenet_runs_the_reference_schedule_and_plans_its_replay_memory():
    """`-lr_decay` on ImageNet: 80 epochs, milestones [20, 40, 60] (conf/global_settings.py); never stepped by the
    online-KD script (R5), stepped under standard semantics."""
    argv = [*ONLINE, "-dataset", "imagenet", "-lr_decay", "-interval_rate", "1.5"]
    reference = resolve("train_space", argv)
    cfg = reference.config
    assert (cfg.data.dataset, cfg.train.epochs, cfg.optim.schedule) == ("imagenet", 80, "constant")
    assert any("80 epochs at a constant LR" in note and "[20,40,60]" in note for note in reference.notes)
    standard = resolve("train_space", [*argv, "--semantics", "standard"]).config
    assert (standard.train.epochs, standard.optim.schedule, standard.optim.milestones) == (80, "multistep",
                                                                                            [20, 40, 60])
    ema = resolve("ema", ["-net", "resnet18", "-dataset", "imagenet", "-lr_decay", "--semantics", "standard"])
    assert (ema.config.train.epochs, ema.config.optim.milestones) == (80, [20, 40, 60])
    plan = runs.build_plan(cfg)
    assert (plan.iters_per_epoch, plan.interval) == (10010, 15015)
    assert any("reference 1.16 TB of host float32 copies, fastkd 7.81 MB" in note for note in plan.notes)


def test_online_kd_flag_mapping():
    cfg = resolve("train_space", ["-net_teacher", "resnet50", "-net_student", "resnet18", "-b", "64", "-temp", "4",
                                  "-alpha", "0.5", "-beta", "0.1", "-feature_loss", "L2", "-optimizer", "Adam",
                                  "-dataset", "tiny_imagenet", "-downsample_factor", "4", "-epoch", "3"]).config
    assert (cfg.model.teacher, cfg.model.student, cfg.model.downsample_factor) == ("resnet50", "resnet18", 4.0)
    assert (cfg.kd.temperature, cfg.kd.alpha, cfg.kd.beta, cfg.kd.feature_loss) == (4.0, 0.5, 0.1, "mse")
    assert (cfg.optim.name, cfg.optim.weight_decay, cfg.data.dataset, cfg.data.batch_size, cfg.train.epochs) == \
        ("adam", 5e-4, "tiny_imagenet", 64, 3)
    assert cfg.data.eval_batch_size == 64  # the reference's test loader uses -b too
    assert cfg.name == "resnet50_resnet18_interval1.0_lr0.1_temp4.0_alpha0.5_batchsize64_L2_tiny_imagenet"


def test_downsample_factor_on_a_non_resnet18_teacher_is_explained():
    notes = resolve("train_space", ["-net_teacher", "resnet50", "-net_student", "resnet18", "-downsample_factor",
                                    "4"]).notes
    assert any(n.startswith("-downsample_factor 4.0: no effect") for n in notes)


def test_self_kd_flag_mapping():
    resolved = resolve("self_kd", ["--model", "resnext50_32x4d", "--loss_coefficient", "0.4",
                                   "--feature_loss_coefficient", "0.05", "--temperature", "2", "--batchsize", "32",
                                   "--init_lr", "0.05", "--epoch", "5", "--autoaugment", "False"])
    cfg = resolved.config
    assert (cfg.model.student, cfg.kd.alpha, cfg.kd.beta, cfg.kd.temperature) == ("resnet18", 0.4, 0.05, 2.0)
    assert (cfg.data.batch_size, cfg.optim.lr, cfg.train.epochs, cfg.optim.nesterov) == (32, 0.05, 5, False)
    assert any("resnext50_32x4d: builds a resnet18" in n for n in resolved.notes)
    assert any(n.startswith("--autoaugment: the reference parses it with bool()") for n in resolved.notes)


def test_dropout_flag_mapping_and_reference_aliases():
    resolved = resolve("dropout", ["-d", "tiny_imagenet", "-a", "resnet101", "--drop_method", "MaxSpacedDropout",
                                   "--space", "2", "--drop", "0.2", "--cutout_input", "--length", "8", "--seed", "3",
                                   "--batch", "64", "--learning_rate", "0.02", "--epochs", "7"])
    cfg = resolved.config
    assert (cfg.method, cfg.dropout.op, cfg.dropout.space, cfg.dropout.rate) == ("spaced_dropout", "max", 2.0, 0.2)
    assert (cfg.dropout.cutout_input, cfg.dropout.length, cfg.seed) == (True, 8, 3)
    assert (cfg.model.student, cfg.data.dataset, cfg.data.batch_size) == ("resnet101", "tiny_imagenet", 64)
    assert (cfg.optim.lr, cfg.optim.nesterov, cfg.train.epochs) == (0.02, True, 7)
    assert cfg.name == "Cutout_MaxSpacedDropout_space_2.0_length_8.0"  # the reference's test_id
    std = resolve("dropout", ["--dataset", "cifar100", "--lr_decay", "--semantics", "standard"]).config
    assert (std.optim.schedule, std.optim.milestones, std.optim.gamma) == ("multistep", [60, 120, 160], 0.2)


def test_no_op_flags_are_explained():
    notes = resolve("dropout", ["--dataset", "cifar100", "--data_augmentation", "--cutout", "--run", "2", "--length",
                                "8", "--no-cuda"]).notes
    heads = [n.split(":")[0] for n in notes]
    assert heads == ["--data_augmentation", "--cutout", "--no-cuda", "--run 2", "--length 8.0"]
    assert all("no effect" in n or "ignored" in n for n in notes)
    assert any(n.startswith("-warm 5: no effect") for n in resolve("train_space", ONLINE + ["-warm", "5"]).notes)


def test_data_root_follows_the_data_root_rule_and_the_data_is_fetched_when_missing(monkeypatch):
    """--data-root, else self KD's own --dataset_path, else data.root stays unset: $FASTKD_DATA, else ./data, as
    for every command; the reference downloads its data, so compat sets data.download."""
    from fastkd.data.readers import data_root

    monkeypatch.setenv("FASTKD_DATA", "/env/data")
    online = resolve("train_space", ONLINE).config
    assert online.data.root is None and online.data.download
    assert data_root(online.data.root) == (Path("/env/data"), "env")
    assert resolve("ema", ["-net", "resnet18", "-dataset", "tiny_imagenet"]).config.data.root is None
    assert resolve("train_space", ONLINE + ["--data-root", "/cli"]).config.data.root == "/cli"
    assert resolve("train_space", ONLINE + ["--data-root=/cli"]).config.data.root == "/cli"
    assert resolve("self_kd", []).config.data.root is None  # its --dataset_path default is ./data anyway
    assert resolve("self_kd", ["--dataset_path", "/sk"]).config.data.root == "/sk"
    assert resolve("self_kd", ["--dataset_path", "/sk", "--data-root", "/cli"]).config.data.root == "/cli"
    tiny = resolve("self_kd", ["--dataset", "tiny_imagenet", "--dataset_path", "/sk"])
    assert tiny.config.data.root is None and any("hard-coded" in n for n in tiny.notes)
    assert resolve("train_space", ONLINE + ["--set", "data.download=false"]).config.data.download is False


def test_set_overrides_and_init_from():
    cfg = resolve("train_space", ONLINE + ["--set", "train.epochs=1", "model.downsample_factor=64", "-b", "8",
                                           "--init-from", "ref.pth"]).config
    assert (cfg.train.epochs, cfg.model.downsample_factor, cfg.data.batch_size, cfg.init_from) == (1, 64.0, 8,
                                                                                                 "ref.pth")


def test_print_config_prints_the_resolved_yaml(capsys):
    assert cli.main(["compat", "train_kd", *ONLINE, "-interval_rate", "0.5", "--print-config"]) == 0
    out = capsys.readouterr().out
    cfg = ExperimentConfig.model_validate(yaml.safe_load(out))
    assert cfg == resolve("train_kd", ONLINE + ["-interval_rate", "0.5"]).config


def test_plan_json_prints_the_plan(capsys):
    assert cli.main(["compat", "train_space", *ONLINE, "-interval_rate", "1.5", "-lr", "0.01", "--plan",
                     "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["method"], plan["iters_per_epoch"], plan["interval"], plan["replay_events"],
            plan["never_distilled"]) == ("spaced_online_kd", 391, 586, 53, 222)
