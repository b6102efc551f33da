"""Bad configs, overrides, command lines and output locations, each with the one line fastkd must answer."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from case import TINY_DIGITS_CONFIG, BadInput, tiny_config, write_bytes, write_yaml

TINY = yaml.safe_load(TINY_DIGITS_CONFIG)
NAN, INF = float("nan"), float("inf")


def _with(settings: dict[str, Any]) -> str:
    """TINY_DIGITS_CONFIG as YAML text with the dotted `settings` set (sections created as needed)."""
    raw = copy.deepcopy(TINY)
    for dotted, value in settings.items():
        *sections, key = dotted.split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return yaml.safe_dump(raw, sort_keys=False)


def file_value(id: str, settings: dict[str, Any], message: str, exit_code: int = 2) -> BadInput:
    """A config file that is the tiny valid config with `settings` changed, trained with `fastkd train c.yaml`."""
    def argv(tmp: Path) -> list[str]:
        write_yaml(tmp, _with(settings))
        return ["train", "c.yaml"]
    return BadInput(f"config-{id}", "config", argv, message, exit_code)


def file_text(id: str, text: str, message: str) -> BadInput:
    """A config file with exactly this text."""
    def argv(tmp: Path) -> list[str]:
        write_yaml(tmp, text)
        return ["train", "c.yaml"]
    return BadInput(f"config-{id}", "config", argv, message)


def file_bytes(id: str, data: bytes, message: str) -> BadInput:
    def argv(tmp: Path) -> list[str]:
        write_bytes(tmp, data)
        return ["train", "c.yaml"]
    return BadInput(f"config-{id}", "config", argv, message)


def override(id: str, overrides: list[str], message: str, kind: str = "override", exit_code: int = 2) -> BadInput:
    """The tiny valid config file with these command-line overrides."""
    def argv(tmp: Path) -> list[str]:
        tiny_config(tmp)
        return ["train", "c.yaml", *overrides]
    return BadInput(f"{kind}-{id}", kind, argv, message, exit_code)


def command(id: str, args: list[str], message: str, kind: str = "cli", exit_code: int = 2) -> BadInput:
    """A command line run in a folder that holds the tiny config as c.yaml and an empty folder `folder/`."""
    def argv(tmp: Path) -> list[str]:
        tiny_config(tmp)
        (tmp / "folder").mkdir()
        return list(args)
    return BadInput(f"{kind}-{id}", kind, argv, message, exit_code)


def _file(key: str, detail: str) -> str:
    """The message of a schema error found in the file: `c.yaml: <key>: <detail>`."""
    return re.escape(f"c.yaml: {key}: ") + "(Input should be )?" + detail


def _cli(override_text: str, key: str, detail: str) -> str:
    """The message of a schema error whose value came from the command line."""
    return re.escape(f"command line override '{override_text}': {key}: ") + "(Input should be )?" + detail


FINITE = r"Input should be a finite number \(got '?(nan|inf)'?\)"

CONFIG_VALUES = [
    file_value("dataset-unknown", {"data.dataset": "imagenet21k"},
               _file("data.dataset", r"'imagenet21k' is not allowed; choose one of 'digits'")),
    file_value("batch-size-zero", {"data.batch_size": 0},
               _file("data.batch_size", r"Input should be greater than or equal to 1 \(got 0\)")),
    file_value("batch-size-fraction", {"data.batch_size": 2.5},
               _file("data.batch_size", r"Input should be a valid integer, got a number with a fractional part")),
    file_value("batch-size-text", {"data.batch_size": "many"},
               _file("data.batch_size", r"Input should be a valid integer, unable to parse string")),
    file_value("eval-batch-size-negative", {"data.eval_batch_size": -1},
               _file("data.eval_batch_size", r"greater than or equal to 1 \(got -1\)")),
    file_value("test-fraction-one", {"data.test_fraction": 1.0},
               _file("data.test_fraction", r"Input should be less than 1 \(got 1.0\)")),
    file_value("test-fraction-nan", {"data.test_fraction": NAN}, _file("data.test_fraction", FINITE)),
    file_value("shuffle-not-bool", {"data.shuffle": "maybe"},
               _file("data.shuffle", r"Input should be a valid boolean")),
    file_value("download-not-bool", {"data.download": "sometimes"},
               _file("data.download", r"Input should be a valid boolean")),
    file_value("augment-unknown", {"data.augment": "heavy"},
               _file("data.augment", r"'heavy' is not allowed; choose one of 'default' or 'none'")),
    file_value("pipeline-unknown", {"data.pipeline": "opencv"},
               _file("data.pipeline", r"'opencv' is not allowed; choose one of 'auto', 'torch' or 'dali'")),
    file_value("data-root-list", {"data.root": ["/a", "/b"]}, _file("data.root", r"Input should be a valid string")),
    file_value("downsample-nan", {"model.downsample_factor": NAN}, _file("model.downsample_factor", FINITE)),
    file_value("downsample-inf", {"model.downsample_factor": INF}, _file("model.downsample_factor", FINITE)),
    file_value("downsample-zero", {"model.downsample_factor": 0},
               _file("model.downsample_factor", r"Input should be greater than 0")),
    file_value("downsample-no-channels-left", {"model.downsample_factor": 1e9},
               _file("model.downsample_factor", r"Input should be less than or equal to 4096")),
    file_value("student-downsample-negative", {"model.student_downsample_factor": -4.0},
               _file("model.student_downsample_factor", r"Input should be greater than 0")),
    file_value("student-model-unknown", {"model.student": "resnet19"},
               r"unknown model 'resnet19'; choose one of: .*resnet18"),
    file_value("teacher-model-unknown", {"model.teacher": "vgg16"}, r"unknown model 'vgg16'; choose one of"),
    file_value("student-downsample-one-width-model", {"model.student": "mobilenet"},  # the tiny config divides by 64
               r"model\.student_downsample_factor=64: model 'mobilenet' has one width .*set "
               r"model\.student_downsample_factor=1 or choose a ResNet"),
    file_value("teacher-model-number", {"model.teacher": 18},
               _file("model.teacher", r"Input should be a valid string \(got 18\)")),
    file_value("kd-interval-inf", {"kd.interval": INF}, _file("kd.interval", FINITE)),
    file_value("kd-interval-negative", {"kd.interval": -1.0},
               _file("kd.interval", r"Input should be greater than or equal to 0")),
    file_value("spaced-kd-interval-zero", {"kd.interval": 0.0},
               re.escape("c.yaml: kd.interval: spaced_online_kd needs kd.interval > 0 (use method: online_kd for 0)")),
    file_value("spaced-self-kd-interval-zero", {"method": "spaced_self_kd", "kd.interval": 0.0},
               re.escape("c.yaml: kd.interval: spaced_self_kd needs kd.interval > 0")),
    file_value("temperature-zero", {"kd.temperature": 0.0}, _file("kd.temperature", r"greater than 0")),
    file_value("temperature-nan", {"kd.temperature": NAN}, _file("kd.temperature", FINITE)),
    file_value("alpha-above-one", {"kd.alpha": 1.5}, _file("kd.alpha", r"less than or equal to 1 \(got 1.5\)")),
    file_value("beta-negative", {"kd.beta": -0.1}, _file("kd.beta", r"greater than or equal to 0")),
    file_value("beta-inf", {"kd.beta": INF}, _file("kd.beta", FINITE)),
    file_value("feature-loss-unknown", {"kd.feature_loss": "cosine"},
               _file("kd.feature_loss", r"'cosine' is not allowed; choose one of 'dist'")),
    file_value("ema-decay-one", {"ema.decay": 1.0}, _file("ema.decay", r"less than 1")),
    file_value("ema-interval-inf", {"ema.interval": INF}, _file("ema.interval", FINITE)),
    file_value("ema-interval-nan", {"ema.interval": NAN}, _file("ema.interval", FINITE)),
    file_value("dropout-rate-two", {"dropout.rate": 2.0}, _file("dropout.rate", r"less than or equal to 1")),
    file_value("dropout-space-negative", {"dropout.space": -1.0}, _file("dropout.space", r"greater than or equal to 0")),
    file_value("dropout-space-inf", {"dropout.space": INF}, _file("dropout.space", FINITE)),
    file_value("dropout-op-unknown", {"dropout.op": "gaussian"},
               _file("dropout.op", r"'gaussian' is not allowed; choose one of 'standard' or 'max'")),
    file_value("dropout-length-negative", {"dropout.length": -5}, _file("dropout.length", r"greater than or equal")),
    file_value("spaced-dropout-space-zero", {"method": "spaced_dropout", "dropout.space": 0.0},
               re.escape("c.yaml: dropout.space: spaced_dropout needs dropout.space > 0")),
    file_value("lr-zero", {"optim.lr": 0.0}, _file("optim.lr", r"Input should be greater than 0 \(got 0.0\)")),
    file_value("lr-inf", {"optim.lr": INF}, _file("optim.lr", FINITE)),
    file_value("lr-nan", {"optim.lr": NAN}, _file("optim.lr", FINITE)),
    file_value("lr-text", {"optim.lr": "fast"}, _file("optim.lr", r"Input should be a valid number")),
    file_value("betas-above-one", {"optim.betas": [1.5, 0.9]},
               _file("optim.betas.0", r"Input should be less than 1 \(got 1.5\)")),
    file_value("betas-nan", {"optim.betas": [0.9, NAN]}, _file("optim.betas.1", FINITE)),
    file_value("betas-one-value", {"optim.betas": [0.9]}, _file("optim.betas.1", r"Field required")),
    file_value("betas-three-values", {"optim.betas": [0.9, 0.99, 0.999]},
               _file("optim.betas", r"Tuple should have at most 2 items")),
    file_value("beta2-exactly-one", {"optim.betas": [0.9, 1.0]}, _file("optim.betas.1", r"less than 1")),
    file_value("adam-beta1-negative", {"optim.betas": [-0.1, 0.9]}, _file("optim.betas.0", r"greater than or equal to 0")),
    file_value("momentum-one", {"optim.momentum": 1.0}, _file("optim.momentum", r"less than 1")),
    file_value("nesterov-without-momentum", {"optim.nesterov": True, "optim.momentum": 0.0},
               re.escape("c.yaml: optim.nesterov: Nesterov momentum needs optim.name=sgd and optim.momentum > 0")),
    file_value("nesterov-with-adam", {"optim.nesterov": True, "optim.name": "adam"},
               re.escape("c.yaml: optim.nesterov: Nesterov momentum needs optim.name=sgd")),
    file_value("optimizer-unknown", {"optim.name": "lion"},
               _file("optim.name", r"'lion' is not allowed; choose one of 'sgd', 'adam' or 'adamw'")),
    file_value("weight-decay-negative", {"optim.weight_decay": -1.0}, _file("optim.weight_decay", r"greater than or")),
    file_value("milestones-decreasing", {"optim.milestones": [120, 60]},
               _file("optim.milestones", r"must be strictly increasing")),
    file_value("milestones-zero", {"optim.milestones": [0, 10]},
               _file("optim.milestones.0", r"greater than or equal to 1")),
    file_value("gamma-inf", {"optim.gamma": INF}, _file("optim.gamma", FINITE)),
    file_value("schedule-unknown", {"optim.schedule": "linear"},
               _file("optim.schedule", r"'linear' is not allowed; choose one of 'constant', 'cosine'")),
    file_value("epochs-zero", {"train.epochs": 0}, _file("train.epochs", r"greater than or equal to 1 \(got 0\)")),
    file_value("epochs-fraction", {"train.epochs": 1.5}, _file("train.epochs", r"a valid integer, got a number with a fractional part \(got 1.5\)")),
    file_value("device-unknown", {"train.device": "tpu"},
               _file("train.device", r"'tpu' is not allowed; choose one of 'auto', 'cpu' or 'cuda'")),
    file_value("amp-unknown", {"train.amp": "fp8"}, _file("train.amp", r"'fp8' is not allowed")),
    file_value("compile-not-choice", {"train.compile": "sometimes"}, _file("train.compile", r"'sometimes' is not")),
    file_value("channels-last-unknown", {"train.channels_last": "sometimes"}, _file("train.channels_last", r"must be true, false or auto \(got 'sometimes'\)")),
    file_value("tensorboard-not-choice", {"train.tensorboard": "maybe"},
               _file("train.tensorboard", r"must be true, false or auto \(got 'maybe'\)")),
    file_value("wandb-mode-unknown", {"log.wandb.project": "p", "log.wandb.mode": "cloud"},
               _file("log.wandb.mode", r"'cloud' is not allowed; choose one of 'online', 'offline' or 'disabled'")),
    file_value("wandb-project-with-slash", {"log.wandb.project": "team/proj"},
               _file("log.wandb.project", r"must be a wandb name: 1 to 128 characters, none of / .*got 'team/proj'")),
    file_value("wandb-project-empty", {"log.wandb.project": ""},
               _file("log.wandb.project", r"must be a wandb name: 1 to 128 characters.*got ''")),
    file_value("wandb-entity-without-project", {"log.wandb.entity": "team"},
               re.escape("c.yaml: log.wandb.entity: wandb logs only when a project is set; set log.wandb.project")),
    file_value("wandb-unknown-key", {"log.wandb.projekt": "p"}, re.escape("c.yaml: unknown key 'log.wandb.projekt'")),
    file_value("log-section-not-mapping", {"log": "wandb"}, _file("log", r"Input should be a valid dictionary")),
    file_value("log-every-zero", {"train.log_every": 0}, _file("train.log_every", r"greater than or equal to 1")),
    file_value("max-steps-zero", {"train.max_steps": 0}, _file("train.max_steps", r"greater than or equal to 1")),
    file_value("eval-every-zero", {"train.eval_every": 0}, _file("train.eval_every", r"greater than or equal to 1")),
    file_value("fp16-on-cpu", {"train.amp": "fp16"},
               re.escape("train.amp: fp16 autocast needs CUDA; use train.amp=off (or bf16) on CPU")),
    file_value("float64-with-bf16", {"train.float64": True, "train.amp": "bf16"},
               re.escape("train.float64 runs everything in float64; it cannot be combined with train.amp=bf16")),
    file_value("seed-huge", {"seed": 2**40}, _file("seed", r"less than or equal to 4294967295 \(got 1099511627776\)")),
    file_value("seed-negative", {"seed": -1}, _file("seed", r"greater than or equal to 0 \(got -1\)")),
    file_value("seed-fraction", {"seed": 1.5}, _file("seed", r"a valid integer, got a number with a fractional part")),
    file_value("name-escapes-output-dir", {"name": "../../elsewhere"},
               _file("name", r"must be a plain folder name .*got '\.\./\.\./elsewhere'")),
    file_value("name-empty", {"name": ""}, _file("name", r"must be a plain folder name \(not empty")),
    file_value("name-hidden", {"name": ".hidden"}, _file("name", r"must be a plain folder name .*got '\.hidden'")),
    file_value("name-nested", {"name": "a/b"}, _file("name", r"must be a plain folder name .*got 'a/b'")),
    file_value("name-number", {"name": 5}, _file("name", r"Input should be a valid string \(got 5\)")),
    file_value("output-dir-empty", {"output_dir": ""}, _file("output_dir", r"String should have at least 1 character \(got ''\)")),
    file_value("method-unknown", {"method": "distill"},
               _file("method", r"'distill' is not allowed; choose one of 'no_kd'")),
    file_value("semantics-unknown", {"semantics": "textbook"},
               _file("semantics", r"'textbook' is not allowed; choose one of 'reference' or 'standard'")),
    file_value("unknown-top-level-key", {"epochs": 5},
               re.escape("c.yaml: unknown key 'epochs' (check the spelling; `fastkd config --describe`")),
    file_value("unknown-nested-key", {"train.epoch": 5},
               re.escape("c.yaml: unknown key 'train.epoch'") + r".*; did you mean train\.epochs\?$"),
    file_value("unknown-section", {"optimizer.lr": 0.1}, re.escape("c.yaml: unknown key 'optimizer'")),
    file_value("unknown-section-misspelt", {"trian.epochs": 1},
               re.escape("c.yaml: unknown key 'trian'") + r".*; did you mean train\?$"),
    file_value("method-misspelt", {"method": "spaced_onlin_kd"},
               _file("method", r"'spaced_onlin_kd' is not allowed; choose one of .*; did you mean spaced_online_kd\?$")),
    file_value("choice-misspelt", {"data.pipeline": "torh"},
               _file("data.pipeline", r"'torh' is not allowed; choose one of .*; did you mean torch\?$")),
    file_value("section-not-mapping", {"optim": 5}, _file("optim", r"Input should be a valid dictionary")),
    file_value("init-from-missing", {"init_from": "nowhere.pt"}, r"nowhere\.pt: no such checkpoint file"),
]

CONFIG_FILES = [
    file_text("duplicate-top-level-key", TINY_DIGITS_CONFIG + "train:\n  epochs: 3\n",
              r"c\.yaml: not valid YAML \(duplicate key 'train' \(keep one\) at line \d+, column 1\)"),
    file_text("duplicate-nested-key", TINY_DIGITS_CONFIG.replace("  epochs: 1\n", "  epochs: 1\n  epochs: 2\n"),
              r"c\.yaml: not valid YAML \(duplicate key 'epochs' \(keep one\) at line \d+, column 3\)"),
    file_text("duplicate-scalar-key", "seed: 1\nseed: 2\n", r"duplicate key 'seed' \(keep one\) at line 2"),
    file_text("integer-top-level-key", TINY_DIGITS_CONFIG + "1: one\n", r"c\.yaml: not valid YAML \(key 1 is not a name"),
    file_text("integer-nested-key", TINY_DIGITS_CONFIG.replace("train:\n", "train:\n  5: x\n"),
              r"key 5 is not a name .* at line \d+, column 3"),
    file_text("boolean-key", TINY_DIGITS_CONFIG + "yes: 1\n", r"key True is not a name \(keys are section"),
    file_text("null-key", TINY_DIGITS_CONFIG + "~: 1\n", r"key None is not a name"),
    file_text("tab-indentation", "train:\n\tepochs: 1\n", r"c\.yaml: not valid YAML \(.*found character '\\t' that cannot start any token at line 2, column 1; "
              r"indent with spaces"),
    file_text("unbalanced-bracket", "optim:\n  betas: [0.9, 0.99\n", r"c\.yaml: not valid YAML \(.*line \d+"),
    file_text("unclosed-quote", "name: 'run\n", r"c\.yaml: not valid YAML"),
    file_text("two-documents", "seed: 1\n---\nseed: 2\n", r"c\.yaml: not valid YAML \(expected a single document in the stream, but found another document at line 2"),
    file_text("python-object-tag", "name: !!python/object/apply:os.system ['echo pwned']\n",
              r"c\.yaml: not valid YAML \(could not determine a constructor"),
    file_text("top-level-list", "- train\n- epochs\n",
              re.escape("c.yaml: expected a mapping of sections at the top level (e.g. 'train:'), got a list")),
    file_text("top-level-scalar", "just some words\n", r"c\.yaml: expected a mapping .* got a str"),
    file_text("top-level-number", "42\n", r"c\.yaml: expected a mapping .* got a int"),
    file_bytes("binary-file", bytes(range(256)) * 4, r"c\.yaml: not a UTF-8 text file \(byte 0x80 at offset 128\)"),
    file_bytes("latin-1-text", "name: caf\u00e9\n".encode("latin-1"),
               r"c\.yaml: not a UTF-8 text file \(byte 0xe9 at offset 9\); a config is a YAML text file saved as"),
    file_bytes("utf-16-text", "seed: 1\n".encode("utf-16"), r"c\.yaml: not a UTF-8 text file \(byte 0xff"),
    file_bytes("nul-byte", b"seed: 1\n\x00\n", r"c\.yaml: not valid YAML \(unacceptable character #x0000"),
    BadInput("config-missing-file", "config", lambda tmp: ["train", "missing.yaml"],
             re.escape("fastkd: error: missing.yaml: cannot read config (No such file or directory)")),
    BadInput("config-is-a-folder", "config", lambda tmp: (tmp / "cfgdir").mkdir() or ["train", "cfgdir"],
             re.escape("cfgdir: cannot read config (Is a directory)")),
]

OVERRIDES = [
    override("unbalanced-yaml", ["train.epochs=[1"],
             re.escape("command line override 'train.epochs=[1': the value is not valid YAML (") + r".*quote it"),
    override("unbalanced-brace", ["optim.lr={"], re.escape("command line override 'optim.lr={': the value is not")),
    override("duplicate-key-in-value", ["optim.betas={a: 1, a: 2}"], r"not valid YAML \(duplicate key 'a'"),
    override("betas-above-one", ["optim.betas=[1.5,0.9]"],
             _cli("optim.betas=[1.5,0.9]", "optim.betas.0", r"Input should be less than 1 \(got 1.5\)")),
    override("betas-nan", ["optim.betas=[.nan,0.9]"], _cli("optim.betas=[.nan,0.9]", "optim.betas.0", FINITE)),
    override("lr-inf", ["optim.lr=.inf"], _cli("optim.lr=.inf", "optim.lr", FINITE)),
    override("lr-negative", ["optim.lr=-0.1"], _cli("optim.lr=-0.1", "optim.lr", r"greater than 0")),
    override("kd-interval-inf", ["kd.interval=.inf"], _cli("kd.interval=.inf", "kd.interval", FINITE)),
    override("ema-interval-nan", ["ema.interval=.nan"], _cli("ema.interval=.nan", "ema.interval", FINITE)),
    override("downsample-nan", ["model.downsample_factor=.nan"],
             _cli("model.downsample_factor=.nan", "model.downsample_factor", FINITE)),
    override("temperature-negative", ["kd.temperature=-1"], _cli("kd.temperature=-1", "kd.temperature", "greater")),
    override("seed-huge", ["seed=99999999999999"], _cli("seed=99999999999999", "seed", r"less than or equal to")),
    override("name-escapes", ["name=../../elsewhere"],
             _cli("name=../../elsewhere", "name", r"must be a plain folder name")),
    override("name-empty-string", ["name=''"],
             re.escape('command line override "name=\'\'": name: must be a plain folder name (not empty')),
    override("name-nothing", ["name="], _cli("name=", "name", r"Input should be a valid string \(got None\)")),
    override("name-dotdot", ["name=.."], _cli("name=..", "name", r"must be a plain folder name")),
    override("name-absolute", ["name=/tmp/x"], _cli("name=/tmp/x", "name", r"must be a plain folder name")),
    override("empty-key", ["=5"], re.escape("command line override '=5': the key has an empty part; write")),
    override("empty-key-part", ["train..epochs=3"], re.escape("command line override 'train..epochs=3': the key has")),
    override("no-equals-sign", ["train.epochs"],
             re.escape("override 'train.epochs': expected key=value, e.g. train.epochs=10")),
    override("unknown-key", ["train.epoch=3"],
             re.escape("command line override 'train.epoch=3': unknown key 'train.epoch'")),
    override("dataset-unknown", ["data.dataset=mnist"], _cli("data.dataset=mnist", "data.dataset", "'mnist' is not")),
    override("section-replaced-by-number", ["train=5"], _cli("train=5", "train", r"Input should be a valid dict")),
    override("key-below-a-setting", ["train.epochs.value=3"],
             re.escape("command line override 'train.epochs.value=3': 'epochs' is not a section")),
    override("nesterov-without-momentum", ["optim.nesterov=true", "optim.momentum=0"],
             re.escape("command line override 'optim.nesterov=true': optim.nesterov: Nesterov momentum needs")),
    override("spaced-dropout-space-zero", ["method=spaced_dropout", "dropout.space=0"],
             re.escape("command line override 'dropout.space=0': dropout.space: spaced_dropout needs")),
    override("spaced-kd-interval-zero", ["kd.interval=0"],
             re.escape("command line override 'kd.interval=0': kd.interval: spaced_online_kd needs kd.interval > 0")),
    override("test-fraction-zero", ["data.test_fraction=0"],
             _cli("data.test_fraction=0", "data.test_fraction", "greater than 0")),
    override("output-dir-nothing", ["output_dir="], _cli("output_dir=", "output_dir", r"a valid string \(got None\)")),
    override("milestones-decreasing", ["optim.milestones=[5,3]"],
             _cli("optim.milestones=[5,3]", "optim.milestones", r"must be strictly increasing")),
    override("wandb-mode-unknown", ["log.wandb.project=p", "log.wandb.mode=cloud"],
             _cli("log.wandb.mode=cloud", "log.wandb.mode", r"'cloud' is not allowed; choose one of 'online'")),
    override("wandb-mode-without-project", ["log.wandb.mode=offline"],
             re.escape("command line override 'log.wandb.mode=offline': log.wandb.mode: wandb logs only when a "
                       "project is set")),
    override("tensorboard-not-choice", ["train.tensorboard=sometimes"],
             _cli("train.tensorboard=sometimes", "train.tensorboard", r"must be true, false or auto")),
    override("device-unknown", ["train.device=tpu"], _cli("train.device=tpu", "train.device", "'tpu' is not")),
    override("last-of-repeated-override-blamed", ["optim.lr=0.1", "optim.lr=nan"],
             _cli("optim.lr=nan", "optim.lr", r"valid number|finite")),
    BadInput("override-file-value-not-blamed-on-override", "override",
             lambda tmp: write_yaml(tmp, _with({"kd.alpha": 3.0})) and ["train", "c.yaml", "train.epochs=1", "seed=1"],
             _file("kd.alpha", r"less than or equal to 1 \(got 3.0\)")),
    override("second-config-file", ["other.yaml"],
             re.escape("override 'other.yaml': expected key=value")),
]

CLI = [
    command("no-command", [], r"^fastkd: error: the following arguments are required: COMMAND \(see fastkd --help\)"),
    command("unknown-command", ["fit", "c.yaml"], r"unknown command 'fit'; choose one of train, plan, eval, config"),
    command("misspelt-command", ["trian", "c.yaml"], r"unknown command 'trian'; did you mean train\?"),
    command("train-without-config", ["train"],
            re.escape("fastkd train needs a CONFIG: a YAML file or a packaged config's name")),
    command("train-without-config-but-flag", ["train", "--quiet", "seed=1"], r"fastkd train needs a CONFIG"),
    command("train-unknown-flag", ["train", "c.yaml", "--bogus"],
            re.escape("fastkd: error: train: unrecognized arguments: --bogus (see fastkd train --help)")),
    command("train-unknown-flag-after-override", ["train", "c.yaml", "seed=1", "--fast", "--quiet"],
            re.escape("train: unrecognized arguments: --fast")),
    command("train-flag-with-value", ["train", "c.yaml", "--quiet=yes"],
            r"train: argument --quiet: ignored explicit argument 'yes'"),
    command("resume-without-folder", ["train", "--resume"], r"argument --resume: expected one argument"),
    command("plan-without-config", ["plan"], r"plan: the following arguments are required: CONFIG"),
    command("plan-unknown-flag", ["plan", "c.yaml", "--jsn"], r"plan: unrecognized arguments: --jsn"),
    command("eval-without-checkpoint", ["eval"], r"eval: the following arguments are required: checkpoint"),
    command("demo-zero-epochs", ["demo", "--epochs", "0"],
            re.escape("demo: argument --epochs: expected a whole number >= 1, got '0'")),
    command("demo-negative-epochs", ["demo", "--epochs", "-2"], r"argument --epochs: expected a whole number >= 1"),
    command("demo-epochs-not-a-number", ["demo", "--epochs", "two"], r"--epochs: expected a whole number >= 1, got 'two'"),
    command("demo-epochs-fraction", ["demo", "--epochs", "1.5"], r"--epochs: expected a whole number >= 1, got '1.5'"),
    command("demo-out-without-folder", ["demo", "--out"], r"demo: argument --out: expected one argument"),
    command("demo-positional", ["demo", "extra"], r"demo: unrecognized arguments: extra"),
    command("config-describe-with-file", ["config", "--describe", "c.yaml"],
            re.escape("--describe prints the schema of every config; leave out CONFIG and overrides")),
    command("config-unknown-flag", ["config", "c.yaml", "--all"], r"config: unrecognized arguments: --all"),
    command("config-bad-override", ["config", "c.yaml", "optim.lr=inf"], _cli("optim.lr=inf", "optim.lr", FINITE)),
    command("plan-bad-override-after-flag", ["plan", "c.yaml", "--json", "kd.alpha=2"],
            _cli("kd.alpha=2", "kd.alpha", r"less than or equal to 1")),
    command("compat-without-script", ["compat"], r"compat: the following arguments are required: script"),
]

OUTPUTS = [
    override("output-dir-is-a-file", ["output_dir=c.yaml"],
             re.escape("c.yaml/tiny: cannot create the run folder: ") + r".*c\.yaml is a file, not a folder",
             kind="output", exit_code=1),
    override("output-dir-below-a-file", ["output_dir=c.yaml/runs"], r"c\.yaml is a file, not a folder",
             kind="output", exit_code=1),
    override("run-folder-is-a-file", ["output_dir=.", "name=c.yaml"],
             r"c\.yaml: cannot create the run folder: .*/c\.yaml is a file, not a folder",
             kind="output", exit_code=1),
    override("output-dir-in-proc", ["output_dir=/proc/fastkd"],
             re.escape("/proc/fastkd/tiny: the run folder would be inside /proc, a virtual file system"),
             kind="output", exit_code=1),
    override("output-dir-in-sys", ["output_dir=/sys/fastkd"], r"inside /sys, a virtual file system",
             kind="output", exit_code=1),
    override("output-dir-proc-self", ["output_dir=/proc/self"], r"inside /proc, a virtual file system",
             kind="output", exit_code=1),
    override("output-dir-dev-null", ["output_dir=/dev/null"], r"/dev/null/tiny: .*(virtual file system|is a file)",
             kind="output", exit_code=1),
    BadInput("output-dir-in-proc-from-file", "output",
             lambda tmp: write_yaml(tmp, _with({"output_dir": "/proc/fastkd"})) and ["train", "c.yaml"],
             r"inside /proc, a virtual file system; choose a folder on disk", 1),
    command("demo-out-is-a-file", ["demo", "--out", "c.yaml"],
            re.escape("c.yaml: cannot create the demo output folder: ") + r".*c\.yaml is a file", kind="output",
            exit_code=1),
    command("demo-out-below-a-file", ["demo", "--out", "c.yaml/demo"], r"c\.yaml is a file, not a folder",
            kind="output", exit_code=1),
    command("demo-out-in-proc", ["demo", "--out", "/proc/fastkd-demo"],
            r"demo output folder would be inside /proc", kind="output", exit_code=1),
    command("demo-out-in-sys", ["demo", "--out", "/sys/fastkd-demo"], r"inside /sys", kind="output", exit_code=1),
]

CASES = CONFIG_VALUES + CONFIG_FILES + OVERRIDES + CLI + OUTPUTS
