"""timm-style model registry: decorate an entrypoint once, build it by name everywhere."""

from __future__ import annotations

import fnmatch
import inspect
from typing import Callable

import torch.nn as nn

from ..errors import ConfigError

_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Record `fn` under its function name; a second registration of the same name is a bug."""
    name = fn.__name__
    if name in _ENTRYPOINTS:
        raise ValueError(f"model {name!r} is registered twice")
    _ENTRYPOINTS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching an fnmatch pattern, sorted."""
    return sorted(n for n in _ENTRYPOINTS if fnmatch.fnmatch(n, pattern))


def is_model(name: str) -> bool:
    return name in _ENTRYPOINTS


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; kwargs that are None are dropped so model defaults win.

    Example: ``create_model("resnet18", num_classes=100, downsample_factor=4.0)``
    """
    if name not in _ENTRYPOINTS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return _ENTRYPOINTS[name](**{k: v for k, v in kwargs.items() if v is not None})


def width_divisor(name: str, factor: float, key: str) -> float | None:
    """The `downsample_factor` to build model `name` with: `factor` where its entrypoint takes one (the ResNets),
    else None, as such a model has one width; a factor other than 1 for it is a config error naming `key`."""
    if name not in _ENTRYPOINTS or "downsample_factor" in inspect.signature(_ENTRYPOINTS[name]).parameters:
        return factor
    if factor != 1.0:
        raise ConfigError(f"{key}={factor:g}: model {name!r} has one width (it takes no downsample_factor); "
                          f"set {key}=1 or choose a ResNet")
    return None


def family_model_name(name: str, prefix: str) -> str:
    """The registered model of a method's family for a configured name: `resnet18` -> `selfkd_resnet18` with
    prefix `selfkd_`; a name that already carries the prefix is kept. Unknown names raise listing the family."""
    full = name if name.startswith(prefix) else prefix + name
    if not is_model(full):
        choices = ", ".join(n.removeprefix(prefix) for n in list_models(prefix + "*"))
        raise ConfigError(f"model.student: {name!r} has no {prefix.rstrip('_')} variant; choose one of: {choices}")
    return full
