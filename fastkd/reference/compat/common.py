"""What every script translator shares: the draft it returns, its one-line refusals and the reference's
optimizer settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...models import is_model
from ..errors import CompatError
from ..flags import REFERENCE_GAMMA, REFERENCE_MILESTONES, REFERENCE_MOMENTUM, REFERENCE_WEIGHT_DECAY

@dataclass
class Draft:
    """What a script translator produces: the raw config dict plus notes."""

    raw: dict[str, Any]
    notes: list[str]


def _shown(flag: str, value: Any) -> str:
    return flag if value is None else f"{flag} {value}"


def crash(script: str, flag: str, value: Any, why: str, fix: str) -> CompatError:
    return CompatError(f"{script}: {_shown(flag, value)}: the reference script crashes here ({why}); {fix}")


def unsupported(script: str, flag: str, value: Any, why: str) -> CompatError:
    return CompatError(f"{script}: {_shown(flag, value)}: fastkd cannot honour this ({why})")


def optim_section(name: str, lr: float, *, nesterov: bool = False, lr_decay: bool = False) -> dict[str, Any]:
    optim: dict[str, Any] = {"name": name, "lr": lr, "weight_decay": REFERENCE_WEIGHT_DECAY,
                             "schedule": "multistep" if lr_decay else "constant"}
    if name == "sgd":
        optim |= {"momentum": REFERENCE_MOMENTUM, "nesterov": nesterov}
    if lr_decay:
        optim |= {"milestones": list(REFERENCE_MILESTONES), "gamma": REFERENCE_GAMMA}
    return optim


def optimizer_name(script: str, value: str) -> str:
    names = {"SGD": "sgd", "Adam": "adam"}
    if value not in names:
        raise crash(script, "-optimizer", value, "no optimizer is built for it", "use SGD or Adam")
    return names[value]


def cnn_dataset(script: str, value: str) -> str:
    """`-dataset` of the online-KD and EMA scripts: their loaders know cifar100, tiny_imagenet and imagenet."""
    if value in ("cifar100", "tiny_imagenet"):
        return value
    if value == "imagenet":
        raise unsupported(script, "-dataset", value, "fastkd's CNN data sets are cifar100 and tiny_imagenet")
    raise crash(script, "-dataset", value, "it has no data-loader branch for it", "use cifar100 or tiny_imagenet")


def name_suffix(semantics: str) -> str:
    return "" if semantics == "reference" else "_standard"


def usable_names(reference_nets: tuple[str, ...], registry_prefix: str = "") -> str:
    """The names both the reference script builds and fastkd's model registry holds, for error messages."""
    return ", ".join(n for n in reference_nets if is_model(registry_prefix + n))
