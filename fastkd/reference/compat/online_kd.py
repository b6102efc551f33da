"""`train_space` / `train_kd` (the online-KD scripts) -> an online-KD config."""

from __future__ import annotations

from typing import Any

from ...methods.online_kd import OFFLINE_RATE
from ..flags import (
    ONLINE_KD_REFERENCE_NETS, ONLINE_KD_REFERENCE_VGG, ONLINE_KD_REGISTRY_NAMES, ONLINE_KD_SHUFFLENETS,
    ONLINE_KD_STUDENT_OWN_NAMES, ONLINE_KD_VIT_DATASETS, REFERENCE_LR_DECAY_EPOCHS, no_effect,
)
from .common import Draft, cnn_dataset, crash, name_suffix, optim_section, optimizer_name

FEATURE_LOSSES = {"dist": "dist", "L1": "l1", "L2": "mse", "SmoothL1": "smoothl1", "CE": "ce"}


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
            raise crash(script, flag, value, "its student builder tests -net_teacher for the shufflenet names, "
                         "docs/semantics.md §9, so no student is built",
                         f"pass -net_teacher {value} too, or use one of {others}")
    if value in ONLINE_KD_REFERENCE_VGG:
        raise crash(script, flag, value, "its VGG builders are called with a keyword they do not take, "
                     "docs/semantics.md §9", f"use one of {usable}")
    if value not in ONLINE_KD_REFERENCE_NETS:
        raise crash(script, flag, value, "models/nets.py has no branch for it", f"use one of {usable}")
    if value == "vit" and dataset not in ONLINE_KD_VIT_DATASETS:
        raise crash(script, flag, value, f"models/nets.py builds its ViT only for cifar100, none for {dataset}",
                     "use -dataset cifar100 or another network")
    return ONLINE_KD_REGISTRY_NAMES.get(value, value)


def translate_online_kd(script: str, v: dict[str, Any], given: set[str], semantics: str) -> Draft:
    notes: list[str] = []
    dataset = cnn_dataset(script, v["dataset"])
    teacher = _online_kd_net(script, "-net_teacher", v["net_teacher"], v["net_teacher"], dataset, notes)
    student = _online_kd_net(script, "-net_student", v["net_student"], v["net_teacher"], dataset, notes)
    if v["feature_loss"] not in FEATURE_LOSSES:
        raise crash(script, "-feature_loss", v["feature_loss"], "no feature loss function is defined for it",
                     "use dist, L1, L2, SmoothL1 or CE")
    optimizer = optimizer_name(script, v["optimizer"])
    rate = v["interval_rate"]
    method = "offline_kd" if rate >= OFFLINE_RATE else "online_kd" if rate == 0 else "spaced_online_kd"
    if "downsample_factor" in given and teacher != "resnet18" and v["downsample_factor"] != 1.0:
        why = no_effect("only a resnet18 teacher is narrowed, docs/semantics.md §3.1")
        notes.append(f"-downsample_factor {v['downsample_factor']}: {why}")
    epochs, lr_decay = v["epoch"], False
    if v["lr_decay"]:
        epochs = REFERENCE_LR_DECAY_EPOCHS
        if semantics == "reference":
            notes.append(f"-lr_decay: reproduced literally: {epochs} epochs at a constant LR (the reference builds "
                         "MultiStepLR([60,120,160], 0.2) but never steps it, docs/semantics.md R5)")
        else:
            lr_decay = True
            notes.append(f"-lr_decay: {epochs} epochs with MultiStepLR([60,120,160], 0.2) stepped every epoch "
                         "(standard semantics; the reference never steps it)")
        if "epoch" in given:
            notes.append(f"-epoch {v['epoch']}: overridden by -lr_decay ({epochs} epochs), as in the reference")
    name = (f"{v['net_teacher']}_{v['net_student']}_interval{rate}_lr{v['lr']}_temp{v['temp']}_alpha{v['alpha']}"
            f"_batchsize{v['b']}_{v['feature_loss']}_{dataset}{name_suffix(semantics)}")
    raw = {
        "name": name, "method": method, "semantics": semantics,
        "data": {"dataset": dataset, "batch_size": v["b"], "eval_batch_size": v["b"]},
        "model": {"teacher": teacher, "student": student, "downsample_factor": v["downsample_factor"]},
        "kd": {"interval": rate, "temperature": v["temp"], "alpha": v["alpha"], "beta": v["beta"],
               "feature_loss": FEATURE_LOSSES[v["feature_loss"]]},
        "optim": optim_section(optimizer, v["lr"], lr_decay=lr_decay),
        "train": {"epochs": epochs},
    }
    return Draft(raw, notes)
