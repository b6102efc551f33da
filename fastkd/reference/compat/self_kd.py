"""`self_kd` (self_KD/train.py) -> a self-KD config."""

from __future__ import annotations

from typing import Any

from ...models import is_model
from ..flags import SELF_KD_REFERENCE_NETS, SELF_KD_REGISTRY_PREFIX, no_effect
from .common import Draft, crash, name_suffix, optim_section, unsupported, usable_names

def translate_self_kd(script: str, v: dict[str, Any], given: set[str], semantics: str) -> Draft:
    notes: list[str] = []
    dataset = v["dataset"]
    if dataset == "cifar10":
        raise crash(script, "--dataset", dataset, "its CIFAR-10 branch builds neither loaders nor a model, "
                     "docs/semantics.md §9", "use cifar100 or tiny_imagenet")
    if dataset not in ("cifar100", "tiny_imagenet"):
        raise crash(script, "--dataset", dataset, "it has no branch for it", "use cifar100 or tiny_imagenet")
    model = v["model"]
    if model == "resnext50_32x4d":
        notes.append("--model resnext50_32x4d: builds a resnet18, as the reference does (docs/semantics.md §9)")
        model = "resnet18"
    usable = usable_names(SELF_KD_REFERENCE_NETS, SELF_KD_REGISTRY_PREFIX)
    if model not in SELF_KD_REFERENCE_NETS:
        raise crash(script, "--model", model, "no network is built for it", f"use one of {usable}")
    if not is_model(SELF_KD_REGISTRY_PREFIX + model):
        raise unsupported(script, "--model", model, f"fastkd has no multi-exit {model}; use one of {usable}")
    if not v["autoaugment"]:
        raise unsupported(script, "--autoaugment", "''", "an empty value turns AutoAugment and Cutout off in the "
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
        "name": f"self_{v['model']}_interval{rate}_batchsize{v['batchsize']}_{dataset}{name_suffix(semantics)}",
        "method": "self_kd" if rate == 0 else "spaced_self_kd", "semantics": semantics,
        "data": data,
        "model": {"student": model},
        "kd": {"interval": rate, "temperature": v["temperature"], "alpha": v["loss_coefficient"],
               "beta": v["feature_loss_coefficient"], "feature_loss": "dist"},
        "optim": optim_section("sgd", v["init_lr"]),
        "train": {"epochs": v["epoch"]},
    }
    return Draft(raw, notes)
