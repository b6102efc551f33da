"""`fastkd compat SCRIPT ARGV...`: the reference scripts' own command lines, unchanged, on the fastkd engine.

SCRIPT names a reference entry point (spec section 0):

=============  ======================================================================  ===========
SCRIPT         reference script                                                        flag style
=============  ======================================================================  ===========
train_space    Spaced-KD ``online_KD/train_space.py`` (alias ``train_kd``: the          ``-b 128``
               byte-identical spacing_generalization ``online_KD/train_kd.py``)
ema            spacing_generalization ``online_KD/train_EMA.py``                       ``-b 128``
self_kd        ``self_KD/train.py``                                                    ``--batchsize``
dropout        spacing_generalization ``dropout/train.py``                             ``--batch_size``
export         fastkd run checkpoint -> the file the reference script writes/reads     (fastkd)
=============  ======================================================================  ===========

Each script's flags are parsed with the reference's own names, types, defaults and choices (argparse, as the
reference does, so its abbreviations work too), then mapped onto an :class:`ExperimentConfig` with
``semantics: reference``. Flags that only steer the reference's environment, or that the reference parses and
never uses, are accepted and explained in one line each. Flags fastkd cannot honour, and the inputs on which the
reference itself crashes (spec 9), stop with one line naming the flag. The fastkd-only flags are listed in
FASTKD_FLAGS_HELP (and by `fastkd compat SCRIPT -h`); docs/compat.md has the flag-by-flag mapping.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import ConfigError, ExperimentConfig, apply_overrides, dump_config, validate
from .methods.schedule import OFFLINE_RATE

SCRIPTS = ("train_space", "train_kd", "ema", "self_kd", "dropout", "export")
DATA_ENV = "FASTKD_DATA"

FASTKD_FLAGS_HELP = """fastkd-only flags (full spelling only; everything else is the reference's):
  --print-config        print the resolved YAML config and exit
  --plan [--json]       print `fastkd plan` of the config and exit
  --data-root DIR       data folder (else $FASTKD_DATA, else the reference's own path)
  --semantics standard  textbook semantics instead of the reference's (default: reference)
  --set KEY=VALUE ...   config overrides, e.g. --set train.epochs=1 model.downsample_factor=64
  --init-from PATH      start from a fastkd or reference checkpoint (docs/compat.md)
  --resume              continue the run in <output_dir>/<name>
  --quiet               no progress bar, header or summary table
"""

REFERENCE_WEIGHT_DECAY = 5e-4
REFERENCE_MOMENTUM = 0.9
REFERENCE_MILESTONES = [60, 120, 160]
"""`conf/global_settings.py` MILESTONES, also hard-coded in `dropout/train.py`."""
REFERENCE_GAMMA = 0.2
REFERENCE_LR_DECAY_EPOCHS = 200
"""`conf/global_settings.py` EPOCH: what `-lr_decay` silently switches the online-KD run length to (quirk 5)."""

# Where each reference script reads its data (all hard-coded except self KD's --dataset_path default).
REFERENCE_CIFAR_ROOT = "/data/datasets/CIFAR"
REFERENCE_TINY_ROOT = "/data/datasets/tiny-imagenet-200"

DEVICE_NOTE = "ignored: fastkd picks the device itself (train.device=auto; --set train.device=cpu forces the CPU)"
GPU_IDS_NOTE = "ignored: fastkd trains on one device it picks itself (train.device); there is no DataParallel"
WANDB_NOTE = "ignored: fastkd logs to metrics.csv in the run folder (and TensorBoard when installed), not wandb"


class CompatError(ConfigError):
    """A reference flag fastkd cannot honour, or an input on which the reference crashes; one line."""


# ------------------------------------------------------------------------------------------ flag tables
@dataclass(frozen=True)
class Flag:
    """One reference argparse argument, spelled, typed and defaulted exactly as the reference script does."""

    names: tuple[str, ...]
    default: Any = None
    type: Callable[[str], Any] | None = str
    store_true: bool = False
    required: bool = False
    choices: tuple[str, ...] | None = None
    effect: str | None = None
    """Set for flags without a fastkd counterpart: the one line printed when the flag is given."""

    @property
    def dest(self) -> str:
        long = next((n for n in self.names if n.startswith("--")), self.names[0])
        return long.lstrip("-").replace("-", "_")

    def reference_default(self) -> Any:
        """argparse converts string defaults with `type` (e.g. `-downsample_factor default='1.0'` -> 1.0)."""
        if isinstance(self.default, str) and self.type is not None:
            return self.type(self.default)
        return self.default


def _no_effect(why: str) -> str:
    return f"no effect in the reference either ({why})"


ONLINE_KD_FLAGS = (
    Flag(("-net_teacher",), "resnet18", required=True),
    Flag(("-net_student",), "resnet18", required=True),
    Flag(("-gpu",), True, store_true=True, effect=DEVICE_NOTE),
    Flag(("-b",), 128, int),
    Flag(("-warm",), 1, int, effect=_no_effect("its warm-up scheduler is commented out")),
    Flag(("-lr",), 0.1, float),
    Flag(("-lr_decay",), False, store_true=True),
    Flag(("-epoch",), 80, int),
    Flag(("-temp",), 3.0, float),
    Flag(("-alpha",), 0.3, float),
    Flag(("-beta",), 0.03, float),
    Flag(("-interval_rate",), 1.0, float),
    Flag(("-downsample_factor",), "1.0", float),
    Flag(("-wandb_entity",), "none", effect=WANDB_NOTE),
    Flag(("-wandb_project",), "spaced_distillation", effect=WANDB_NOTE),
    Flag(("-feature_loss",), "dist"),
    Flag(("-dataset",), "cifar100"),
    Flag(("-gpu_ids",), "0,1", effect=GPU_IDS_NOTE),
    Flag(("-optimizer",), "SGD"),
)

EMA_FLAGS = (
    Flag(("-net",), "resnet18", required=True),
    Flag(("-gpu",), True, store_true=True, effect=DEVICE_NOTE),
    Flag(("-b",), 128, int),
    Flag(("-lr",), 0.01, float),
    Flag(("-lr_decay",), False, store_true=True),
    Flag(("-epoch",), 80, int),
    Flag(("-alpha",), 0.999, float),
    Flag(("-interval",), 1, float),
    Flag(("-downsample_factor",), "1.0", float,
         effect=_no_effect("train_EMA.py always builds the network at full width")),
    Flag(("-wandb_entity",), "sgl0117", effect=WANDB_NOTE),
    Flag(("-wandb_project",), "SKD_V2", effect=WANDB_NOTE),
    Flag(("-dataset",), "cifar100"),
    Flag(("-gpu_ids",), "0", effect=GPU_IDS_NOTE),
    Flag(("-optimizer",), "SGD"),
)

SELF_KD_FLAGS = (
    Flag(("--model",), "resnet18"),
    Flag(("--dataset",), "cifar100"),
    Flag(("--epoch",), 80, int),
    Flag(("--loss_coefficient",), 0.3, float),
    Flag(("--feature_loss_coefficient",), 0.03, float),
    Flag(("--dataset_path",), "data"),
    Flag(("--autoaugment",), True, bool),  # the reference's type=bool: any non-empty string is True (quirk 14)
    Flag(("--temperature",), 3.0, float),
    Flag(("--batchsize",), 128, int),
    Flag(("--init_lr",), 0.01, float),
    Flag(("--wandb_entity",), "none", effect=WANDB_NOTE),
    Flag(("--wandb_project",), "SKD", effect=WANDB_NOTE),
    Flag(("--interval_rate",), 1.0, float),
    Flag(("--gpu_ids",), "0,1", effect=GPU_IDS_NOTE),
)

DROPOUT_DATASETS = ("cifar10", "cifar100", "svhn", "tiny_imagenet", "cub200")
DROPOUT_MODELS = ("resnet18", "resnet50", "resnet101", "wideresnet")
DROPOUT_METHODS = ("StandardDropout", "MaxDropout", "SpacedDropout", "MaxSpacedDropout")
UNSPACED_DROPOUT = {"SpacedDropout": "StandardDropout", "MaxSpacedDropout": "MaxDropout"}

DROPOUT_FLAGS = (
    Flag(("--dataset", "-d"), "cifar10", choices=DROPOUT_DATASETS),
    Flag(("--model", "-a"), "resnet18", choices=DROPOUT_MODELS),
    Flag(("--batch_size",), 128, int),
    Flag(("--epochs",), 80, int),
    Flag(("--learning_rate",), 0.01, float),
    Flag(("--data_augmentation",), False, store_true=True,
         effect=_no_effect("its transforms are fixed; the flag only appears in commented-out code")),
    Flag(("--cutout",), False, store_true=True,
         effect=_no_effect("the per-image Cutout transform is never attached; only the run name changes")),
    Flag(("--cutout_input",), False, store_true=True),
    Flag(("--erasing_input",), False, store_true=True),
    Flag(("--n_holes",), 1, int),
    Flag(("--length",), 16.0, float),
    Flag(("--no-cuda",), False, store_true=True, effect=DEVICE_NOTE),
    Flag(("--seed",), 0, int),
    Flag(("--run",), 0, int, effect=_no_effect("dropout/train.py never reads it")),
    Flag(("--drop",), 0.3, float),
    Flag(("--drop_method",), "MaxDropout", choices=DROPOUT_METHODS),
    Flag(("--space",), 10.0, float),
    Flag(("--gpu_ids",), "0", effect=GPU_IDS_NOTE),
    Flag(("--wandb_entity",), "sgl0117", effect=WANDB_NOTE),
    Flag(("--wandb_project",), "SKD_V2", effect=WANDB_NOTE),
    Flag(("--lr_decay",), False, store_true=True),
)


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus an error line and exits; fastkd reports one line (exit 2 via the CLI)."""

    def error(self, message: str):
        raise CompatError(f"{self.prog.removeprefix('fastkd compat ')}: {message} (-h lists the flags)")


def _reference_parser(script: str, flags: tuple[Flag, ...]) -> _OneLineParser:
    parser = _OneLineParser(prog=f"fastkd compat {script}", formatter_class=argparse.RawDescriptionHelpFormatter,
                            description=f"The reference script's flags, as it spells them ({script}).",
                            epilog=FASTKD_FLAGS_HELP)
    for flag in flags:
        kwargs: dict[str, Any] = {"dest": flag.dest, "default": argparse.SUPPRESS, "required": flag.required,
                                  "help": flag.effect or ("required" if flag.required
                                                          else f"reference default: {flag.reference_default()}")}
        if flag.store_true:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = flag.type
            if flag.choices:
                kwargs["choices"] = flag.choices
        parser.add_argument(*flag.names, **kwargs)
    return parser


# ---------------------------------------------------------------------------------------- fastkd flags
@dataclass
class Options:
    """The fastkd-only flags of one `fastkd compat` call."""

    print_config: bool = False
    plan: bool = False
    json: bool = False
    quiet: bool = False
    resume: bool = False
    data_root: str | None = None
    semantics: str = "reference"
    init_from: str | None = None
    overrides: list[str] = field(default_factory=list)


_SWITCHES = {"--print-config": "print_config", "--plan": "plan", "--json": "json", "--quiet": "quiet",
             "--resume": "resume"}
_VALUED = {"--data-root": "data_root", "--semantics": "semantics", "--init-from": "init_from"}


def split_fastkd_flags(argv: list[str]) -> tuple[Options, list[str]]:
    """Take the fastkd-only flags (exact spelling) out of argv; the rest goes to the reference's parser."""
    options = Options()
    rest: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, inline = token.partition("=")
        if token in _SWITCHES:
            setattr(options, _SWITCHES[token], True)
        elif name in _VALUED:
            if eq:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise CompatError(f"{name} needs a value")
            setattr(options, _VALUED[name], value)
        elif token == "--set":
            start = i + 1
            while i + 1 < len(argv) and "=" in argv[i + 1] and not argv[i + 1].startswith("-"):
                i += 1
            if i + 1 == start:
                raise CompatError("--set needs KEY=VALUE pairs, e.g. --set train.epochs=1 data.batch_size=64")
            options.overrides.extend(argv[start:i + 1])
        else:
            rest.append(token)
        i += 1
    if options.semantics not in ("reference", "standard"):
        raise CompatError(f"--semantics {options.semantics!r}: choose reference or standard")
    if options.print_config and options.plan:
        raise CompatError("--print-config and --plan: pick one")
    if options.json and not options.plan:
        raise CompatError("--json goes with --plan")
    return options, rest


# ------------------------------------------------------------------------------------- the translation
@dataclass
class Resolved:
    """A reference command line, translated: the config to run, the notes to print, the fastkd options."""

    script: str
    config: ExperimentConfig
    notes: list[str]
    options: Options
    data_root_source: str
    """`--data-root`, the reference flag that set it, `$FASTKD_DATA`, or `reference default`."""


@dataclass
class _Draft:
    """What a script translator produces: the raw config dict plus notes and the data-root decision."""

    raw: dict[str, Any]
    notes: list[str]
    reference_root: str
    reference_root_flag: str | None = None
    """The reference flag that set `reference_root` explicitly (self KD's --dataset_path), if given."""


def _shown(flag: str, value: Any) -> str:
    return flag if value is None else f"{flag} {value}"


def _crash(script: str, flag: str, value: Any, why: str, fix: str) -> CompatError:
    return CompatError(f"{script}: {_shown(flag, value)}: the reference script crashes here ({why}); {fix}")


def _unsupported(script: str, flag: str, value: Any, why: str) -> CompatError:
    return CompatError(f"{script}: {_shown(flag, value)}: fastkd cannot honour this ({why})")


def _optim(name: str, lr: float, *, nesterov: bool = False, lr_decay: bool = False) -> dict[str, Any]:
    optim: dict[str, Any] = {"name": name, "lr": lr, "weight_decay": REFERENCE_WEIGHT_DECAY,
                             "schedule": "multistep" if lr_decay else "constant"}
    if name == "sgd":
        optim |= {"momentum": REFERENCE_MOMENTUM, "nesterov": nesterov}
    if lr_decay:
        optim |= {"milestones": list(REFERENCE_MILESTONES), "gamma": REFERENCE_GAMMA}
    return optim


def _optimizer_name(script: str, value: str) -> str:
    names = {"SGD": "sgd", "Adam": "adam"}
    if value not in names:
        raise _crash(script, "-optimizer", value, "no optimizer is built for it", "use SGD or Adam")
    return names[value]


def _cnn_dataset(script: str, value: str) -> str:
    """`-dataset` of the online-KD and EMA scripts: their loaders know cifar100, tiny_imagenet and imagenet."""
    if value in ("cifar100", "tiny_imagenet"):
        return value
    if value == "imagenet":
        raise _unsupported(script, "-dataset", value, "fastkd's CNN data sets are cifar100 and tiny_imagenet")
    raise _crash(script, "-dataset", value, "it has no data-loader branch for it", "use cifar100 or tiny_imagenet")


def _reference_root(dataset: str) -> str:
    return REFERENCE_TINY_ROOT if dataset == "tiny_imagenet" else REFERENCE_CIFAR_ROOT


def _name_suffix(semantics: str) -> str:
    return "" if semantics == "reference" else "_standard"


# --- online KD (train_space.py / train_kd.py) -------------------------------------------------------
ONLINE_KD_NETS = ("resnet18", "resnet50", "resnet101", "resnet152")
ONLINE_KD_NETS_MISSING = ("mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2", "vit")
ONLINE_KD_VGG = ("vgg11", "vgg13", "vgg16", "vgg19")
FEATURE_LOSSES = {"dist": "dist", "L1": "l1", "L2": "mse", "SmoothL1": "smoothl1"}


def _online_kd_net(script: str, flag: str, value: str, teacher: str) -> str:
    if value in ONLINE_KD_NETS:
        return value
    if value in ONLINE_KD_VGG:
        raise _crash(script, flag, value, "its VGG builders are called with a keyword they do not take, quirk 7",
                     f"use one of {', '.join(ONLINE_KD_NETS)}")
    if flag == "-net_student" and value in ("shufflenet", "shufflenetv2") and teacher != value:
        raise _crash(script, flag, value, "its student builder tests -net_teacher for the shufflenet names, "
                     "quirk 7, so no student is built", f"use one of {', '.join(ONLINE_KD_NETS)}")
    if value in ONLINE_KD_NETS_MISSING:
        raise _unsupported(script, flag, value, f"fastkd has no {value}; use one of {', '.join(ONLINE_KD_NETS)}")
    raise _crash(script, flag, value, "models/nets.py has no branch for it",
                 f"use one of {', '.join(ONLINE_KD_NETS)}")


def _translate_online_kd(script: str, v: dict[str, Any], given: set[str], semantics: str) -> _Draft:
    notes: list[str] = []
    dataset = _cnn_dataset(script, v["dataset"])
    teacher = _online_kd_net(script, "-net_teacher", v["net_teacher"], v["net_teacher"])
    student = _online_kd_net(script, "-net_student", v["net_student"], v["net_teacher"])
    if v["feature_loss"] == "CE":
        raise _unsupported(script, "-feature_loss", "CE", "fastkd has no cross-entropy feature loss; "
                           "use dist, L1, L2 or SmoothL1")
    if v["feature_loss"] not in FEATURE_LOSSES:
        raise _crash(script, "-feature_loss", v["feature_loss"], "no feature loss function is defined for it",
                     "use dist, L1, L2 or SmoothL1")
    optimizer = _optimizer_name(script, v["optimizer"])
    rate = v["interval_rate"]
    method = "offline_kd" if rate >= OFFLINE_RATE else "online_kd" if rate == 0 else "spaced_online_kd"
    if "downsample_factor" in given and teacher != "resnet18" and v["downsample_factor"] != 1.0:
        why = _no_effect("only a resnet18 teacher is narrowed, quirk 6")
        notes.append(f"-downsample_factor {v['downsample_factor']}: {why}")
    epochs, lr_decay = v["epoch"], False
    if v["lr_decay"]:
        epochs = REFERENCE_LR_DECAY_EPOCHS
        if semantics == "reference":
            notes.append(f"-lr_decay: reproduced literally: {epochs} epochs at a constant LR (the reference builds "
                         "MultiStepLR([60,120,160], 0.2) but never steps it, quirk 5)")
        else:
            lr_decay = True
            notes.append(f"-lr_decay: {epochs} epochs with MultiStepLR([60,120,160], 0.2) stepped every epoch "
                         "(standard semantics; the reference never steps it)")
        if "epoch" in given:
            notes.append(f"-epoch {v['epoch']}: overridden by -lr_decay ({epochs} epochs), as in the reference")
    name = (f"{v['net_teacher']}_{v['net_student']}_interval{rate}_lr{v['lr']}_temp{v['temp']}_alpha{v['alpha']}"
            f"_batchsize{v['b']}_{v['feature_loss']}_{dataset}{_name_suffix(semantics)}")
    raw = {
        "name": name, "method": method, "semantics": semantics,
        "data": {"dataset": dataset, "batch_size": v["b"], "eval_batch_size": v["b"]},
        "model": {"teacher": teacher, "student": student, "downsample_factor": v["downsample_factor"]},
        "kd": {"interval": rate, "temperature": v["temp"], "alpha": v["alpha"], "beta": v["beta"],
               "feature_loss": FEATURE_LOSSES[v["feature_loss"]]},
        "optim": _optim(optimizer, v["lr"], lr_decay=lr_decay),
        "train": {"epochs": epochs},
    }
    return _Draft(raw, notes, _reference_root(dataset))


# --- EMA (train_EMA.py) ------------------------------------------------------------------------------
EMA_NETS = ("resnet18", "resnet50", "resnet101")


def _translate_ema(script: str, v: dict[str, Any], given: set[str], semantics: str) -> _Draft:
    notes: list[str] = []
    dataset = _cnn_dataset(script, v["dataset"])
    if v["net"] not in EMA_NETS:
        raise _crash(script, "-net", v["net"], "train_EMA.py builds only resnet18, resnet50 and resnet101",
                     "use one of those")
    optimizer = _optimizer_name(script, v["optimizer"])
    lr_decay = False
    if v["lr_decay"]:
        if semantics == "reference":
            notes.append("-lr_decay: " + _no_effect("train_EMA.py never steps its scheduler and runs -epoch epochs"))
        else:
            lr_decay = True
            notes.append("-lr_decay: MultiStepLR([60,120,160], 0.2) stepped every epoch (standard semantics; "
                         "the reference never steps it)")
    interval = v["interval"]
    raw = {
        "name": f"ema_{dataset}_{v['net']}_spaced_{interval}_alpha_{v['alpha']}{_name_suffix(semantics)}",
        "method": "ema" if interval == 0 else "spaced_ema", "semantics": semantics,
        "data": {"dataset": dataset, "batch_size": v["b"], "eval_batch_size": v["b"]},
        "model": {"student": v["net"]},
        "ema": {"decay": v["alpha"], "interval": float(interval)},
        "optim": _optim(optimizer, v["lr"], lr_decay=lr_decay),
        "train": {"epochs": v["epoch"]},
    }
    return _Draft(raw, notes, _reference_root(dataset))


# --- self KD (self_KD/train.py) ----------------------------------------------------------------------
SELF_KD_NETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
SELF_KD_NETS_MISSING = ("wideresnet50", "wideresnet101", "resnext101_32x8d")


def _translate_self_kd(script: str, v: dict[str, Any], given: set[str], semantics: str) -> _Draft:
    notes: list[str] = []
    dataset = v["dataset"]
    if dataset == "cifar10":
        raise _crash(script, "--dataset", dataset, "its CIFAR-10 branch builds neither loaders nor a model, "
                     "quirk 14", "use cifar100 or tiny_imagenet")
    if dataset not in ("cifar100", "tiny_imagenet"):
        raise _crash(script, "--dataset", dataset, "it has no branch for it", "use cifar100 or tiny_imagenet")
    model = v["model"]
    if model == "resnext50_32x4d":
        notes.append("--model resnext50_32x4d: builds a resnet18, as the reference does (quirk 14)")
        model = "resnet18"
    elif model in SELF_KD_NETS_MISSING:
        raise _unsupported(script, "--model", model, f"fastkd has no multi-exit {model}; "
                           f"use one of {', '.join(SELF_KD_NETS)}")
    elif model not in SELF_KD_NETS:
        raise _crash(script, "--model", model, "no network is built for it", f"use one of {', '.join(SELF_KD_NETS)}")
    if not v["autoaugment"]:
        raise _unsupported(script, "--autoaugment", "''", "an empty value turns AutoAugment and Cutout off in the "
                           "reference and fastkd has no such self-KD recipe; drop the flag")
    if "autoaugment" in given:
        notes.append("--autoaugment: the reference parses it with bool(), so any non-empty value means True "
                     "(quirk 14): AutoAugment + Cutout stay on")
    reference_root, root_flag = v["dataset_path"], ("--dataset_path" if "dataset_path" in given else None)
    if dataset == "tiny_imagenet":
        if root_flag:
            why = _no_effect("its Tiny-ImageNet path is hard-coded")
            notes.append(f"--dataset_path {v['dataset_path']}: {why}")
        reference_root, root_flag = REFERENCE_TINY_ROOT, None
    rate = v["interval_rate"]
    raw = {
        "name": f"self_{v['model']}_interval{rate}_batchsize{v['batchsize']}_{dataset}{_name_suffix(semantics)}",
        "method": "self_kd" if rate == 0 else "spaced_self_kd", "semantics": semantics,
        "data": {"dataset": dataset, "batch_size": v["batchsize"], "eval_batch_size": v["batchsize"]},
        "model": {"student": model},
        "kd": {"interval": rate, "temperature": v["temperature"], "alpha": v["loss_coefficient"],
               "beta": v["feature_loss_coefficient"], "feature_loss": "dist"},
        "optim": _optim("sgd", v["init_lr"]),
        "train": {"epochs": v["epoch"]},
    }
    return _Draft(raw, notes, reference_root, root_flag)


# --- dropout (dropout/train.py) ----------------------------------------------------------------------
def _dropout_run_name(v: dict[str, Any]) -> str:
    """The reference's `test_id` (its wandb run and .pkl file name)."""
    if v["lr_decay"]:
        return f"{v['dataset']}_{v['model']}_spaced_{v['space']}_{v['drop_method']}_{v['drop']}_decay"
    if v["cutout_input"]:
        return f"Cutout_{v['drop_method']}_space_{v['space']}_length_{v['length']}"
    if v["erasing_input"]:
        return f"Erasing_{v['drop_method']}_space_{v['space']}_length_{v['length']}"
    if v["cutout"]:
        return f"Cutout_standard_{v['drop_method']}_length_{v['length']}"
    return f"{v['dataset']}_{v['model']}_spaced_{v['space']}_{v['drop_method']}_{v['drop']}"


def _translate_dropout(script: str, v: dict[str, Any], given: set[str], semantics: str) -> _Draft:
    from .data import train_size

    notes: list[str] = []
    dataset = v["dataset"]
    if dataset in ("cifar10", "svhn"):
        default = " (the reference's default)" if "dataset" not in given else ""
        raise _crash(script, "--dataset", f"{dataset}{default}", "its data loaders have no branch for it, quirk 21",
                     "pass --dataset cifar100 (the README's) or tiny_imagenet")
    if dataset == "cub200":
        raise _unsupported(script, "--dataset", dataset, "fastkd has no CUB-200 reader; use cifar100 or "
                           "tiny_imagenet")
    if v["model"] == "wideresnet":
        raise _unsupported(script, "--model", "wideresnet", "fastkd has no WideResNet with MaxDropout; use "
                           "resnet18, resnet50 or resnet101")
    if v["erasing_input"] and not v["cutout_input"]:
        raise _crash(script, "--erasing_input", None, "it calls Erasing_input, which it never imports, quirk 21",
                     "drop the flag (or use --cutout_input)")
    spaced = v["drop_method"] in ("SpacedDropout", "MaxSpacedDropout")
    iters_per_epoch = math.ceil(train_size(dataset) / v["batch_size"])
    if spaced and int(v["space"] * iters_per_epoch) == 0:
        raise _crash(script, "--space", v["space"], f"{v['drop_method']} divides by int(space*L) = 0 iterations, "
                     "quirk 21", f"use --space >= {1 / iters_per_epoch:.4g} or --drop_method "
                     f"{UNSPACED_DROPOUT[v['drop_method']]}")
    if v["cutout_input"]:
        if v["n_holes"] != 1:
            raise _unsupported(script, "--n_holes", v["n_holes"], "fastkd's batch cutout cuts one hole")
        if v["length"] != int(v["length"]):
            raise _unsupported(script, "--length", v["length"], "fastkd's cutout length is a whole number of pixels")
    else:
        for flag in ("n_holes", "length"):
            if flag in given:
                notes.append(f"--{flag} {v[flag]}: {_no_effect('it only sizes --cutout_input holes')}")
    if v["erasing_input"]:
        notes.append("--erasing_input: " + _no_effect("--cutout_input takes precedence; only the run name changes"))
    lr_decay = False
    if v["lr_decay"]:
        if semantics == "reference":
            raise _unsupported(script, "--lr_decay", None, "the reference steps its MultiStepLR only in epochs whose "
                               "test accuracy did not improve, quirk 22; add --semantics standard for "
                               "MultiStepLR([60,120,160], 0.2) stepped every epoch")
        lr_decay = True
    op = "max" if v["drop_method"].startswith("Max") else "standard"
    raw = {
        "name": _dropout_run_name(v) + _name_suffix(semantics),
        "method": "spaced_dropout" if spaced else "dropout", "semantics": semantics, "seed": v["seed"],
        "data": {"dataset": dataset, "batch_size": v["batch_size"], "eval_batch_size": v["batch_size"]},
        "model": {"student": v["model"]},
        "dropout": {"op": op, "rate": v["drop"], "space": v["space"], "cutout_input": v["cutout_input"],
                    "length": int(v["length"])},
        "optim": _optim("sgd", v["learning_rate"], nesterov=True, lr_decay=lr_decay),
        "train": {"epochs": v["epochs"]},
    }
    return _Draft(raw, notes, _reference_root(dataset))


_SCRIPTS: dict[str, tuple[tuple[Flag, ...], Callable[..., _Draft]]] = {
    "train_space": (ONLINE_KD_FLAGS, _translate_online_kd),
    "train_kd": (ONLINE_KD_FLAGS, _translate_online_kd),
    "ema": (EMA_FLAGS, _translate_ema),
    "self_kd": (SELF_KD_FLAGS, _translate_self_kd),
    "dropout": (DROPOUT_FLAGS, _translate_dropout),
}


def resolve(script: str, argv: list[str], environ: dict[str, str] | None = None) -> Resolved:
    """Parse a reference command line (plus fastkd-only flags) into the config fastkd will run."""
    if script not in _SCRIPTS:
        raise CompatError(f"unknown script {script!r}; choose one of: {', '.join(SCRIPTS)}")
    environ = os.environ if environ is None else environ
    options, reference_argv = split_fastkd_flags(list(argv))
    flags, translate = _SCRIPTS[script]
    given = vars(_reference_parser(script, flags).parse_args(reference_argv))
    values = {f.dest: f.reference_default() for f in flags} | given
    notes = []
    for flag in flags:
        if flag.effect and flag.dest in given:
            shown = flag.names[0] if flag.store_true else f"{flag.names[0]} {given[flag.dest]}"
            notes.append(f"{shown}: {flag.effect}")
    draft = translate(script, values, set(given), options.semantics)
    notes.extend(draft.notes)

    raw = draft.raw
    if options.data_root is not None:
        root, source = options.data_root, "--data-root"
    elif draft.reference_root_flag is not None:
        root, source = draft.reference_root, draft.reference_root_flag
    elif environ.get(DATA_ENV):
        root, source = environ[DATA_ENV], f"${DATA_ENV}"
    else:
        root, source = draft.reference_root, "reference default"
    raw["data"]["root"] = root
    if options.init_from is not None:
        raw["init_from"] = options.init_from
    config = validate(apply_overrides(raw, options.overrides), f"fastkd compat {script}")
    return Resolved(script, config, notes, options, source)


# ----------------------------------------------------------------------------------------------- running
def run(script: str, argv: list[str]) -> int:
    """`fastkd compat SCRIPT ARGV...`: print the config or plan, or train; user errors raise ConfigError."""
    if script == "export":
        return _export_command(argv)
    resolved = resolve(script, argv)
    for note in resolved.notes:
        print(f"fastkd compat: {note}", file=sys.stderr)
    cfg, options = resolved.config, resolved.options
    if options.print_config:
        print(dump_config(cfg), end="")
        return 0
    if options.plan:
        from .cli import build_plan, print_plan

        print_plan(build_plan(cfg), as_json=options.json)
        return 0
    return _train(resolved)


def _train(resolved: Resolved) -> int:
    from .cli import train_and_report

    cfg, options = resolved.config, resolved.options
    root = Path(cfg.data.root).expanduser() if cfg.data.root else None
    if cfg.data.dataset != "digits" and (root is None or not root.exists()):
        where = f"{root} ({resolved.data_root_source})" if root else "nowhere"
        raise CompatError(f"no {cfg.data.dataset} data at {where}: pass --data-root DIR or set {DATA_ENV}=DIR "
                          "(the reference scripts read fixed paths of their authors' machines)")
    run_dir = Path(cfg.output_dir) / cfg.name
    if options.resume and not (run_dir / "last.pt").is_file():
        raise CompatError(f"--resume: no last.pt in {run_dir}; start without --resume")
    if not options.resume and (run_dir / "last.pt").exists():
        raise CompatError(f"{run_dir} already holds a run; add --resume to continue it, or --set name=OTHER")
    return train_and_report(cfg, run_dir, resume=options.resume, quiet=options.quiet,
                            label=f"fastkd compat {resolved.script}")


# ----------------------------------------------------------------------------------------------- export
ONLINE_KD_FAMILY = ("no_kd", "online_kd", "spaced_online_kd", "offline_kd")


def export_reference_checkpoint(payload: dict[str, Any]) -> dict[str, Any]:
    """A fastkd run checkpoint -> the object the reference script for its method saves (docs/compat.md).

    online-KD family: ``{'teacher_model': sd, 'student_model': sd}`` (the save format commented out in
    train_space.py, unwrapped keys); EMA and dropout: ``{'model': sd}`` (what train_EMA.py / dropout/train.py
    write; EMA writes the raw model, quirk 17); self KD: ``net.state_dict()`` of the DataParallel wrapper.
    """
    from .models import DropoutResNet, SelfKDResNet

    if "learners" not in payload or "config" not in payload:
        raise CompatError("not a fastkd run checkpoint (no learners/config); pass a run's last.pt or best.pt")
    method = payload["config"].get("method")
    models = {name: {k.removeprefix("_orig_mod."): v for k, v in state["model"].items()}
              for name, state in payload["learners"].items()}
    if method in ONLINE_KD_FAMILY:
        return {f"{name}_model": sd for name, sd in models.items()}
    if len(models) != 1:
        raise CompatError(f"method {method!r}: expected one trained network, found {', '.join(models)}")
    (sd,) = models.values()
    if method in ("self_kd", "spaced_self_kd"):
        return SelfKDResNet.to_reference_state_dict(sd, data_parallel=True)
    if method in ("dropout", "spaced_dropout"):
        return {"model": DropoutResNet.to_reference_state_dict(sd)}
    if method in ("ema", "spaced_ema"):
        return {"model": sd}
    raise CompatError(f"method {method!r} has no reference checkpoint format")


def _export_command(argv: list[str]) -> int:
    from .engine.checkpoint import load_checkpoint, save_atomic

    if len(argv) != 2 or any(a.startswith("-") for a in argv):
        raise CompatError("usage: fastkd compat export RUN_CHECKPOINT OUT_FILE (e.g. runs/x/best.pt x.pkl)")
    source, target = argv
    payload = load_checkpoint(source)
    save_atomic(export_reference_checkpoint(payload), Path(target))
    print(f"wrote {target}: {payload['config']['method']} weights in the reference script's layout")
    return 0
