"""`dropout` (dropout/train.py) -> a dropout config."""

from __future__ import annotations

import math
from typing import Any

from ...data import train_size
from ...models import is_model
from ..flags import DROPOUT_MODEL_TITLES, DROPOUT_MODELS, DROPOUT_REGISTRY_PREFIX, UNSPACED_DROPOUT, no_effect
from .common import Draft, crash, name_suffix, optim_section, unsupported, usable_names

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


def translate_dropout(script: str, v: dict[str, Any], given: set[str], semantics: str) -> Draft:
    notes: list[str] = []
    dataset = v["dataset"]
    if dataset in ("cifar10", "svhn"):
        default = " (the reference's default)" if "dataset" not in given else ""
        raise crash(script, "--dataset", f"{dataset}{default}", "its data loaders have no branch for it, "
                     "docs/semantics.md §9",
                     "pass --dataset cifar100 (the README's) or tiny_imagenet")
    if dataset == "cub200":
        raise unsupported(script, "--dataset", dataset, "fastkd has no CUB-200 reader; use cifar100 or "
                           "tiny_imagenet")
    if not is_model(DROPOUT_REGISTRY_PREFIX + v["model"]):
        title = DROPOUT_MODEL_TITLES.get(v["model"], v["model"])
        raise unsupported(script, "--model", v["model"], f"fastkd has no {title}; use one of "
                           f"{usable_names(DROPOUT_MODELS, DROPOUT_REGISTRY_PREFIX)}")
    if v["erasing_input"] and not v["cutout_input"]:
        raise crash(script, "--erasing_input", None, "it calls Erasing_input, which it never imports, "
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
        raise crash(script, "--space", v["space"], f"{v['drop_method']} divides by int(space*L) = 0 iterations, "
                     "docs/semantics.md §9", f"use --space >= {1 / iters_per_epoch:.4g} or --drop_method "
                     f"{UNSPACED_DROPOUT[v['drop_method']]}")
    if v["cutout_input"]:
        if v["n_holes"] != 1:
            raise unsupported(script, "--n_holes", v["n_holes"], "fastkd's batch cutout cuts one hole")
        if v["length"] != int(v["length"]):
            raise unsupported(script, "--length", v["length"], "fastkd's cutout length is a whole number of pixels")
    else:
        for flag in ("n_holes", "length"):
            if flag in given:
                notes.append(f"--{flag} {v[flag]}: {no_effect('it only sizes --cutout_input holes')}")
    if v["erasing_input"]:
        notes.append("--erasing_input: " + no_effect("--cutout_input takes precedence; only the run name changes"))
    lr_decay = False
    if v["lr_decay"]:
        if semantics == "reference":
            raise unsupported(script, "--lr_decay", None, "the reference steps its MultiStepLR only in epochs whose "
                               "test accuracy did not improve, docs/semantics.md R17; add --semantics standard for "
                               "MultiStepLR([60,120,160], 0.2) stepped every epoch")
        lr_decay = True
    op = "max" if wide_resnet or v["drop_method"].startswith("Max") else "standard"
    raw = {
        "name": _dropout_run_name(v) + name_suffix(semantics),
        "method": "spaced_dropout" if spaced else "dropout", "semantics": semantics, "seed": v["seed"],
        "data": {"dataset": dataset, "batch_size": v["batch_size"], "eval_batch_size": v["batch_size"]},
        "model": {"student": v["model"]},
        "dropout": {"op": op, "rate": v["drop"], "space": v["space"], "cutout_input": v["cutout_input"],
                    "length": int(v["length"])},
        "optim": optim_section("sgd", v["learning_rate"], nesterov=True, lr_decay=lr_decay),
        "train": {"epochs": v["epochs"]},
    }
    return Draft(raw, notes)
