"""`fastkd compat SCRIPT ARGV...`: the reference scripts' own command lines, unchanged, on the fastkd engine.

SCRIPT names a reference entry point (docs/semantics.md §1):

=============  ======================================================================  ===========
SCRIPT         reference script                                                        flag style
=============  ======================================================================  ===========
train_space    Spaced-KD ``online_KD/train_space.py`` (alias ``train_kd``: the          ``-b 128``
               byte-identical spacing_generalization ``online_KD/train_kd.py``)
ema            spacing_generalization ``online_KD/train_EMA.py``                       ``-b 128``
self_kd        ``self_KD/train.py``                                                    ``--batchsize``
dropout        spacing_generalization ``dropout/train.py``                             ``--batch_size``
run_net        Spaced-KD ``vit/run_net.py``: pycls YAML plus ``KEY VALUE`` overrides   ``--cfg``
               (fastkd.reference.run_net)
export         fastkd run checkpoint -> the file the reference script writes/reads     (fastkd)
=============  ======================================================================  ===========

Each script's flags (fastkd.reference.flags) are parsed with the reference's own names, types, defaults and
choices, spelled in full (no argparse abbreviations: an unknown or misspelt flag is named as given), then mapped
onto an :class:`ExperimentConfig` with ``semantics: reference``. Flags that only steer the reference's
environment, or that the reference parses and never uses, are accepted and explained in one line each. Flags
fastkd cannot honour, and the inputs on which the reference itself crashes (docs/semantics.md §9), stop with one
line naming the flag; so do non-finite numbers. Model names are checked against fastkd's model registry. The
fastkd-only flags are listed in FASTKD_FLAGS_HELP (and by `fastkd compat SCRIPT -h`); docs/compat.md has the
flag-by-flag mapping.
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from ..config import ExperimentConfig, WandbConfig, apply_overrides, dump_config, validate
from ..engine.checkpoint import load_checkpoint, save_atomic
from ..errors import OutputError
from ..methods.online_kd import OFFLINE_RATE
from ..models import is_model
from .errors import CompatError
from .flags import (
    DROPOUT_FLAGS, DROPOUT_MODEL_TITLES, DROPOUT_MODELS, DROPOUT_REGISTRY_PREFIX, EMA_FLAGS,
    EMA_REFERENCE_NETS, FASTKD_FLAGS_HELP, ONLINE_KD_FLAGS, ONLINE_KD_REFERENCE_NETS, ONLINE_KD_REFERENCE_VGG,
    ONLINE_KD_REGISTRY_NAMES, ONLINE_KD_SHUFFLENETS, ONLINE_KD_STUDENT_OWN_NAMES, ONLINE_KD_VIT_DATASETS,
    IMAGENET_LR_DECAY_EPOCHS, IMAGENET_MILESTONES, REFERENCE_GAMMA, REFERENCE_LR_DECAY_EPOCHS, REFERENCE_MILESTONES, REFERENCE_MOMENTUM, REFERENCE_WEIGHT_DECAY, SCRIPTS, SELF_KD_FLAGS, SELF_KD_REFERENCE_NETS,
    SELF_KD_REGISTRY_PREFIX, UNSPACED_DROPOUT, Flag, no_effect,
)
from .keys import export_reference_checkpoint
from .run_net import translate_command_line

class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus an error line and exits; fastkd reports one line (exit 2 via the CLI)."""

    def error(self, message: str):
        raise CompatError(f"{self.prog.removeprefix('fastkd compat ')}: {message} (-h lists the flags)")


def _reference_parser(script: str, flags: tuple[Flag, ...]) -> _OneLineParser:
    parser = _OneLineParser(prog=f"fastkd compat {script}", formatter_class=argparse.RawDescriptionHelpFormatter,
                            description=f"The reference script's flags, as it spells them ({script}).",
                            epilog=FASTKD_FLAGS_HELP, allow_abbrev=False)
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


def spell_out_flags(script: str, flags: tuple[Flag, ...], argv: list[str]) -> tuple[list[str], list[str]]:
    """The reference argv with every flag spelled in full, plus a note per expanded abbreviation.

    A unique prefix of a double-dash flag is expanded, as the reference's argparse does (``--batch 64`` is
    ``--batch_size 64``). Anything else that looks like a flag and is not one is refused, named as given:
    argparse alone reads ``-bogus 1`` as ``-b ogus`` and ``-l`` as ``-lr``, so its error would name another flag.
    Values of valued flags are skipped; negative numbers are values.
    """
    known = {name: flag for flag in flags for name in flag.names}
    spelled: list[str] = []
    notes: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, value = token.partition("=")
        if name not in known and name.startswith("--"):
            matches = [n for n in known if n.startswith("--") and n.startswith(name)]
            if len(matches) == 1:
                notes.append(f"{name}: read as {matches[0]} (a unique prefix, as the reference's argparse reads it)")
                name = matches[0]
                token = name + eq + value
        if name in known:
            takes_value = not known[name].store_true and not eq
            if takes_value and i + 1 < len(argv) and argv[i + 1].partition("=")[0] not in known:
                spelled.append(f"{name}={argv[i + 1]}")  # attached, so a value like -inf is not read as a flag
                i += 2
            else:
                spelled.append(token)
                i += 1
            continue
        if token.startswith("-") and token not in ("-h", "--help") and not _is_number(token):
            end = i + 1
            while end < len(argv) and (not argv[end].startswith("-") or _is_number(argv[end])):
                end += 1
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise CompatError(f"{script}: unrecognized arguments: {' '.join(argv[i:end])} (unknown flag {token!r}: "
                              f"flags are spelled as the reference script spells them{hint}; -h lists the flags)")
        spelled.append(token)
        i += 1
    return spelled, notes


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


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
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
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


@dataclass
class _Draft:
    """What a script translator produces: the raw config dict plus notes."""

    raw: dict[str, Any]
    notes: list[str]


def _shown(flag: str, value: Any) -> str:
    return flag if value is None else f"{flag} {value}"


def _crash(script: str, flag: str, value: Any, why: str, fix: str) -> CompatError:
    return CompatError(f"{script}: {_shown(flag, value)}: the reference script crashes here ({why}); {fix}")


def _unsupported(script: str, flag: str, value: Any, why: str) -> CompatError:
    return CompatError(f"{script}: {_shown(flag, value)}: fastkd cannot honour this ({why})")


def _optim(name: str, lr: float, *, nesterov: bool = False, lr_decay: bool = False,
           milestones: list[int] = REFERENCE_MILESTONES) -> dict[str, Any]:
    optim: dict[str, Any] = {"name": name, "lr": lr, "weight_decay": REFERENCE_WEIGHT_DECAY,
                             "schedule": "multistep" if lr_decay else "constant"}
    if name == "sgd":
        optim |= {"momentum": REFERENCE_MOMENTUM, "nesterov": nesterov}
    if lr_decay:
        optim |= {"milestones": list(milestones), "gamma": REFERENCE_GAMMA}
    return optim


def _lr_decay_schedule(dataset: str) -> tuple[int, list[int]]:
    """(epochs, milestones) of `-lr_decay` in the online-KD and EMA scripts (conf/global_settings.py)."""
    if dataset == "imagenet":
        return IMAGENET_LR_DECAY_EPOCHS, IMAGENET_MILESTONES
    return REFERENCE_LR_DECAY_EPOCHS, REFERENCE_MILESTONES


def _optimizer_name(script: str, value: str) -> str:
    names = {"SGD": "sgd", "Adam": "adam"}
    if value not in names:
        raise _crash(script, "-optimizer", value, "no optimizer is built for it", "use SGD or Adam")
    return names[value]


def _cnn_dataset(script: str, value: str) -> str:
    """`-dataset` of the online-KD and EMA scripts: their loaders know cifar100, tiny_imagenet and imagenet."""
    if value in ("cifar100", "tiny_imagenet", "imagenet"):
        return value
    if value == "imagenet_100":
        raise _crash(script, "-dataset", value, "utils.py's get_training_dataloader has no imagenet_100 branch, so "
                     "it returns an unbound loader", "use imagenet, cifar100 or tiny_imagenet")
    raise _crash(script, "-dataset", value, "it has no data-loader branch for it",
                 "use cifar100, tiny_imagenet or imagenet")


def _name_suffix(semantics: str) -> str:
    return "" if semantics == "reference" else "_standard"


# --- online KD (train_space.py / train_kd.py) -------------------------------------------------------
FEATURE_LOSSES = {"dist": "dist", "L1": "l1", "L2": "mse", "SmoothL1": "smoothl1", "CE": "ce"}


def _usable(reference_nets: tuple[str, ...], registry_prefix: str = "") -> str:
    """The names both the reference script builds and fastkd's model registry holds, for error messages."""
    return ", ".join(n for n in reference_nets if is_model(registry_prefix + n))


def _online_kd_net(script: str, flag: str, value: str, teacher: str, dataset: str, notes: list[str]) -> str:
    """The registered model models/nets.py builds for ``-net_teacher``/``-net_student`` VALUE, or its crash.

    Its student builder tests the student's own name only for the ResNets and MobileNets; next it tests
    ``-net_teacher`` for the shufflenets, so a shufflenet teacher gets a student of its own kind whatever
    ``-net_student`` says (docs/semantics.md §9), and a shufflenet student of any other teacher is never built.
    """
    usable = ", ".join(ONLINE_KD_REFERENCE_NETS)
    if flag == "-net_student" and value not in ONLINE_KD_STUDENT_OWN_NAMES:
        if teacher in ONLINE_KD_SHUFFLENETS:
            if value != teacher:
                notes.append(f"-net_student {value}: builds a {teacher} student, as the reference does (its student "
                             "builder tests -net_teacher for the shufflenet names first, docs/semantics.md §9)")
            value = teacher
        elif value in ONLINE_KD_SHUFFLENETS:
            others = ", ".join(n for n in ONLINE_KD_REFERENCE_NETS if n not in ONLINE_KD_SHUFFLENETS)
            raise _crash(script, flag, value, "its student builder tests -net_teacher for the shufflenet names, "
                         "docs/semantics.md §9, so no student is built",
                         f"pass -net_teacher {value} too, or use one of {others}")
    if value in ONLINE_KD_REFERENCE_VGG:
        raise _crash(script, flag, value, "its VGG builders are called with a keyword they do not take, "
                     "docs/semantics.md §9", f"use one of {usable}")
    if value not in ONLINE_KD_REFERENCE_NETS:
        raise _crash(script, flag, value, "models/nets.py has no branch for it", f"use one of {usable}")
    if value == "vit" and dataset == "imagenet":
        raise _unsupported(script, flag, value, "fastkd has no model of models/nets.py's ImageNet ViT (224 px, patch "
                           f"16, width 3072, depth 12); use one of {usable}")
    if value == "vit" and dataset not in ONLINE_KD_VIT_DATASETS:
        raise _crash(script, flag, value, f"models/nets.py builds its ViT only for cifar100, none for {dataset}",
                     "use -dataset cifar100 or another network")
    return ONLINE_KD_REGISTRY_NAMES.get(value, value)


def _translate_online_kd(script: str, v: dict[str, Any], given: set[str], semantics: str) -> _Draft:
    notes: list[str] = []
    dataset = _cnn_dataset(script, v["dataset"])
    teacher = _online_kd_net(script, "-net_teacher", v["net_teacher"], v["net_teacher"], dataset, notes)
    student = _online_kd_net(script, "-net_student", v["net_student"], v["net_teacher"], dataset, notes)
    if v["feature_loss"] not in FEATURE_LOSSES:
        raise _crash(script, "-feature_loss", v["feature_loss"], "no feature loss function is defined for it",
                     "use dist, L1, L2, SmoothL1 or CE")
    optimizer = _optimizer_name(script, v["optimizer"])
    rate = v["interval_rate"]
    method = "offline_kd" if rate >= OFFLINE_RATE else "online_kd" if rate == 0 else "spaced_online_kd"
    if "downsample_factor" in given and teacher != "resnet18" and v["downsample_factor"] != 1.0:
        why = no_effect("only a resnet18 teacher is narrowed, docs/semantics.md §3.1")
        notes.append(f"-downsample_factor {v['downsample_factor']}: {why}")
    epochs, lr_decay = v["epoch"], False
    decay_epochs, milestones = _lr_decay_schedule(dataset)
    shown = ",".join(map(str, milestones))
    if v["lr_decay"]:
        epochs = decay_epochs
        if semantics == "reference":
            notes.append(f"-lr_decay: reproduced literally: {epochs} epochs at a constant LR (the reference builds "
                         f"MultiStepLR([{shown}], 0.2) but never steps it, docs/semantics.md R5)")
        else:
            lr_decay = True
            notes.append(f"-lr_decay: {epochs} epochs with MultiStepLR([{shown}], 0.2) stepped every epoch "
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
        "optim": _optim(optimizer, v["lr"], lr_decay=lr_decay, milestones=milestones),
        "train": {"epochs": epochs},
    }
    return _Draft(raw, notes)


# --- EMA (train_EMA.py) ------------------------------------------------------------------------------
def _translate_ema(script: str, v: dict[str, Any], given: set[str], semantics: str) -> _Draft:
    notes: list[str] = []
    dataset = _cnn_dataset(script, v["dataset"])
    if v["net"] not in EMA_REFERENCE_NETS:
        raise _crash(script, "-net", v["net"], f"train_EMA.py builds only {', '.join(EMA_REFERENCE_NETS[:-1])} and "
                     f"{EMA_REFERENCE_NETS[-1]}",
                     "use one of those")
    if not is_model(v["net"]):
        raise _unsupported(script, "-net", v["net"], f"fastkd has no {v['net']}; use one of "
                           f"{_usable(EMA_REFERENCE_NETS)}")
    optimizer = _optimizer_name(script, v["optimizer"])
    lr_decay = False
    milestones = _lr_decay_schedule(dataset)[1]
    if v["lr_decay"]:
        if semantics == "reference":
            notes.append("-lr_decay: " + no_effect("train_EMA.py never steps its scheduler and runs -epoch epochs"))
        else:
            lr_decay = True
            notes.append(f"-lr_decay: MultiStepLR([{','.join(map(str, milestones))}], 0.2) stepped every epoch "
                         "(standard semantics; the reference never steps it)")
    interval = v["interval"]
    raw = {
        "name": f"ema_{dataset}_{v['net']}_spaced_{interval}_alpha_{v['alpha']}{_name_suffix(semantics)}",
        "method": "ema" if interval == 0 else "spaced_ema", "semantics": semantics,
        "data": {"dataset": dataset, "batch_size": v["b"], "eval_batch_size": v["b"]},
        "model": {"student": v["net"]},
        "ema": {"decay": v["alpha"], "interval": float(interval)},
        "optim": _optim(optimizer, v["lr"], lr_decay=lr_decay, milestones=milestones),
        "train": {"epochs": v["epoch"]},
    }
    return _Draft(raw, notes)


# --- self KD (self_KD/train.py) ----------------------------------------------------------------------
def _translate_self_kd(script: str, v: dict[str, Any], given: set[str], semantics: str) -> _Draft:
    notes: list[str] = []
    dataset = v["dataset"]
    if dataset == "cifar10":
        raise _crash(script, "--dataset", dataset, "its CIFAR-10 branch builds neither loaders nor a model, "
                     "docs/semantics.md §9", "use cifar100 or tiny_imagenet")
    if dataset not in ("cifar100", "tiny_imagenet"):
        raise _crash(script, "--dataset", dataset, "it has no branch for it", "use cifar100 or tiny_imagenet")
    model = v["model"]
    if model == "resnext50_32x4d":
        notes.append("--model resnext50_32x4d: builds a resnet18, as the reference does (docs/semantics.md §9)")
        model = "resnet18"
    usable = _usable(SELF_KD_REFERENCE_NETS, SELF_KD_REGISTRY_PREFIX)
    if model not in SELF_KD_REFERENCE_NETS:
        raise _crash(script, "--model", model, "no network is built for it", f"use one of {usable}")
    if not is_model(SELF_KD_REGISTRY_PREFIX + model):
        raise _unsupported(script, "--model", model, f"fastkd has no multi-exit {model}; use one of {usable}")
    if not v["autoaugment"]:
        raise _unsupported(script, "--autoaugment", "''", "an empty value turns AutoAugment and Cutout off in the "
                           "reference and fastkd has no such self-KD recipe; drop the flag")
    if "autoaugment" in given:
        notes.append("--autoaugment: the reference parses it with bool(), so any non-empty value means True "
                     "(docs/semantics.md §9): AutoAugment + Cutout stay on")
    data: dict[str, Any] = {"dataset": dataset, "batch_size": v["batchsize"], "eval_batch_size": v["batchsize"]}
    if "dataset_path" in given:  # the reference's own data-root flag (its default `data` is fastkd's too)
        if dataset == "tiny_imagenet":
            notes.append(f"--dataset_path {v['dataset_path']}: {no_effect('its Tiny-ImageNet path is hard-coded')}")
        else:
            data["root"] = v["dataset_path"]
    rate = v["interval_rate"]
    raw = {
        "name": f"self_{v['model']}_interval{rate}_batchsize{v['batchsize']}_{dataset}{_name_suffix(semantics)}",
        "method": "self_kd" if rate == 0 else "spaced_self_kd", "semantics": semantics,
        "data": data,
        "model": {"student": model},
        "kd": {"interval": rate, "temperature": v["temperature"], "alpha": v["loss_coefficient"],
               "beta": v["feature_loss_coefficient"], "feature_loss": "dist"},
        "optim": _optim("sgd", v["init_lr"]),
        "train": {"epochs": v["epoch"]},
    }
    return _Draft(raw, notes)


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
    from ..data import train_size

    notes: list[str] = []
    dataset = v["dataset"]
    if dataset in ("cifar10", "svhn"):
        default = " (the reference's default)" if "dataset" not in given else ""
        raise _crash(script, "--dataset", f"{dataset}{default}", "its data loaders have no branch for it, "
                     "docs/semantics.md §9",
                     "pass --dataset cifar100 (the README's) or tiny_imagenet")
    if dataset == "cub200":
        raise _unsupported(script, "--dataset", dataset, "fastkd has no CUB-200 reader; use cifar100 or "
                           "tiny_imagenet")
    if not is_model(DROPOUT_REGISTRY_PREFIX + v["model"]):
        title = DROPOUT_MODEL_TITLES.get(v["model"], v["model"])
        raise _unsupported(script, "--model", v["model"], f"fastkd has no {title}; use one of "
                           f"{_usable(DROPOUT_MODELS, DROPOUT_REGISTRY_PREFIX)}")
    if v["erasing_input"] and not v["cutout_input"]:
        raise _crash(script, "--erasing_input", None, "it calls Erasing_input, which it never imports, "
                     "docs/semantics.md §9",
                     "drop the flag (or use --cutout_input)")
    # The reference's WideResNet takes only --drop: MaxDropout at that constant rate, whatever --drop_method says.
    wide_resnet = v["model"] == "wideresnet"
    if wide_resnet:
        ignored = [f"--{flag} {v[flag]}" for flag in ("drop_method", "space")
                   if flag in given and not (flag == "space" and v["cutout_input"])]
        if ignored:
            why = no_effect("its WideResNet always applies MaxDropout at the constant --drop rate; only the run "
                            "name changes")
            notes.append(f"{', '.join(ignored)}: {why}")
    spaced = not wide_resnet and v["drop_method"] in ("SpacedDropout", "MaxSpacedDropout")
    iters_per_epoch = math.ceil(train_size(dataset) / v["batch_size"])
    if spaced and int(v["space"] * iters_per_epoch) == 0:
        raise _crash(script, "--space", v["space"], f"{v['drop_method']} divides by int(space*L) = 0 iterations, "
                     "docs/semantics.md §9", f"use --space >= {1 / iters_per_epoch:.4g} or --drop_method "
                     f"{UNSPACED_DROPOUT[v['drop_method']]}")
    if v["cutout_input"]:
        if v["n_holes"] != 1:
            raise _unsupported(script, "--n_holes", v["n_holes"], "fastkd's batch cutout cuts one hole")
        if v["length"] != int(v["length"]):
            raise _unsupported(script, "--length", v["length"], "fastkd's cutout length is a whole number of pixels")
    else:
        for flag in ("n_holes", "length"):
            if flag in given:
                notes.append(f"--{flag} {v[flag]}: {no_effect('it only sizes --cutout_input holes')}")
    if v["erasing_input"]:
        notes.append("--erasing_input: " + no_effect("--cutout_input takes precedence; only the run name changes"))
    lr_decay = False
    if v["lr_decay"]:
        if semantics == "reference":
            raise _unsupported(script, "--lr_decay", None, "the reference steps its MultiStepLR only in epochs whose "
                               "test accuracy did not improve, docs/semantics.md R17; add --semantics standard for "
                               "MultiStepLR([60,120,160], 0.2) stepped every epoch")
        lr_decay = True
    op = "max" if wide_resnet or v["drop_method"].startswith("Max") else "standard"
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
    return _Draft(raw, notes)


# --- wandb (every script but run_net) ---------------------------------------------------------------
WANDB_PLACEHOLDER_ENTITY = "none"
"""The online-KD and self-KD scripts' default -wandb_entity: passed to wandb as an entity literally named 'none'."""


def _wandb_logging(script: str, flags: tuple[Flag, ...], v: dict[str, Any], given: set[str],
                   run_name: str) -> tuple[dict[str, Any], list[str]]:
    """log.wandb for the reference's wandb flags, and one note per flag given. The reference logs every run to
    wandb (project, entity, its run name, every step's losses); fastkd does so when either flag is given, and
    logs to metrics.csv only (no wandb account needed) when neither is."""
    if not {"wandb_entity", "wandb_project"} & given:
        return {}, []
    spelled = {flag.dest: flag.names[0] for flag in flags}
    entity = v["wandb_entity"] if "wandb_entity" in given else None
    if entity == WANDB_PLACEHOLDER_ENTITY:
        entity = None
    wandb = {"project": v["wandb_project"], "entity": entity, "name": run_name}
    try:
        WandbConfig.model_validate(wandb)
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = spelled[f"wandb_{err['loc'][0]}"]
        raise CompatError(f"{script}: {flag} {err['input']}: {err['msg'].removeprefix('Value error, ')}") from None
    where = (f"logs to wandb project {wandb['project']} as run {run_name} with every step's losses "
             "(log.wandb.*, train.log_every_step), as the reference does")
    notes = []
    if "wandb_entity" in given:
        detail = ("the reference's placeholder for no entity: wandb's default entity is used" if entity is None
                  else "the wandb entity (log.wandb.entity)")
        notes.append(f"{spelled['wandb_entity']} {v['wandb_entity']}: {detail}"
                     + ("" if "wandb_project" in given else f"; {where} (the reference's default project)"))
    if "wandb_project" in given:
        notes.append(f"{spelled['wandb_project']} {v['wandb_project']}: {where}")
    return wandb, notes


_SCRIPTS: dict[str, tuple[tuple[Flag, ...], Callable[..., _Draft]]] = {
    "train_space": (ONLINE_KD_FLAGS, _translate_online_kd),
    "train_kd": (ONLINE_KD_FLAGS, _translate_online_kd),
    "ema": (EMA_FLAGS, _translate_ema),
    "self_kd": (SELF_KD_FLAGS, _translate_self_kd),
    "dropout": (DROPOUT_FLAGS, _translate_dropout),
}


def resolve(script: str, argv: list[str]) -> Resolved:
    """Parse a reference command line (plus fastkd-only flags) into the config fastkd will run."""
    if script not in _SCRIPTS:
        raise CompatError(f"unknown script {script!r}; choose one of: {', '.join(SCRIPTS)}")
    options, reference_argv = split_fastkd_flags(list(argv))
    flags, translate = _SCRIPTS[script]
    reference_argv, spelling_notes = spell_out_flags(script, flags, reference_argv)
    given = vars(_reference_parser(script, flags).parse_args(reference_argv))
    values = {f.dest: f.reference_default() for f in flags} | given
    notes = spelling_notes
    for flag in flags:
        if flag.effect and flag.dest in given:
            shown = flag.names[0] if flag.store_true else f"{flag.names[0]} {given[flag.dest]}"
            notes.append(f"{shown}: {flag.effect}")
    draft = translate(script, values, set(given), options.semantics)
    notes.extend(draft.notes)

    raw = draft.raw
    wandb, wandb_notes = _wandb_logging(script, flags, values, set(given), raw["name"])
    if wandb:
        raw["log"] = {"wandb": wandb}
        raw["train"]["log_every_step"] = True
    notes.extend(wandb_notes)
    config = validate(apply_overrides(_with_fastkd_options(raw, options), options.overrides),
                      f"fastkd compat {script}")
    return Resolved(script, config, notes, options)


def _with_fastkd_options(raw: dict[str, Any], options: Options) -> dict[str, Any]:
    """The translated config with what the fastkd-only flags set. The data is fetched when missing, as the
    reference's torchvision loaders download it, into --data-root (else the reference's own flag for it, else
    $FASTKD_DATA, else ./data: the data.root rule)."""
    raw["data"]["download"] = True
    if options.data_root is not None:
        raw["data"]["root"] = options.data_root
    if options.init_from is not None:
        raw["init_from"] = options.init_from
    return raw


# ----------------------------------------------------------------------------------------------- running
def run(script: str, argv: list[str]) -> int:
    """`fastkd compat SCRIPT ARGV...`: print the config or plan, or train; user errors raise ConfigError."""
    if script == "export":
        return _export_command(argv)
    if script == "run_net":
        return _run_net_command(argv)
    resolved = resolve(script, argv)
    for note in resolved.notes:
        print(f"fastkd compat: {note}", file=sys.stderr)
    cfg, options = resolved.config, resolved.options
    if options.print_config:
        print(dump_config(cfg), end="")
        return 0
    if options.plan:
        from ..runs import build_plan, print_plan

        print_plan(build_plan(cfg), as_json=options.json)
        return 0
    return _train(resolved)


def _train(resolved: Resolved) -> int:
    from ..runs import train_and_report

    cfg, options = resolved.config, resolved.options
    run_dir = Path(cfg.output_dir) / cfg.name
    if options.resume and not (run_dir / "last.pt").is_file():
        raise CompatError(f"--resume: no last.pt in {run_dir}; start without --resume")
    if not options.resume and (run_dir / "last.pt").exists():
        raise CompatError(f"{run_dir} already holds a run; add --resume to continue it, or --set name=OTHER")
    return train_and_report(cfg, run_dir, resume=options.resume, quiet=options.quiet,
                            label=f"fastkd compat {resolved.script}")


# ---------------------------------------------------------------------------------------------- run_net
def _run_net_command(argv: list[str]) -> int:
    """`fastkd compat run_net --mode train --cfg FILE.yaml [KEY VALUE ...]` (fastkd.reference.run_net)."""
    if {"-h", "--help"} & set(argv):
        print("usage: fastkd compat run_net --mode train --cfg FILE.yaml [KEY VALUE ...] [fastkd flags]\n"
              "  reads the ViT reference's pycls YAML and KEY VALUE overrides (docs/compat.md, run_net)\n"
              f"{FASTKD_FLAGS_HELP}")
        return 0
    options, reference_argv = split_fastkd_flags(list(argv))
    translation = translate_command_line(reference_argv)
    raw = _with_fastkd_options(translation.raw, options)
    raw["semantics"] = options.semantics
    config = validate(apply_overrides(raw, options.overrides), "fastkd compat run_net")
    for note in translation.notes:  # once the config stands, so a refusal stays one line
        print(f"fastkd compat: {note}", file=sys.stderr)
    if options.print_config:
        print(dump_config(config), end="")
        return 0
    if options.plan:
        from ..runs import build_plan, print_plan

        print_plan(build_plan(config), as_json=options.json)
        return 0
    return _train(Resolved("run_net", config, translation.notes, options))


# ----------------------------------------------------------------------------------------------- export
def _export_command(argv: list[str]) -> int:
    """`fastkd compat export RUN_CHECKPOINT OUT_FILE`: a run checkpoint in the reference script's file layout."""
    if len(argv) != 2 or any(a.startswith("-") for a in argv):
        raise CompatError("usage: fastkd compat export RUN_CHECKPOINT OUT_FILE (e.g. runs/x/best.pt x.pkl)")
    source, target = argv
    payload = load_checkpoint(source)
    exported = export_reference_checkpoint(payload)
    try:
        save_atomic(exported, Path(target))
    except OSError as exc:
        raise OutputError(f"compat export: cannot write {target} ({exc.strerror or type(exc).__name__}); "
                          "pass an OUT_FILE in a writable folder") from None
    print(f"wrote {target}: {payload['config']['method']} weights in the reference script's layout")
    return 0
