"""The method registry: every `method:` value, registered once by the module that implements it.

Deliberately free of torch imports so the config schema can ask for the method names; the method modules
register themselves when `fastkd.methods` is imported, which `method_names()` and `get_method()` do on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TypeVar

from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import Method

MethodClass = TypeVar("MethodClass", bound="type[Method]")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    family: str
    """The module family that implements it (`online_kd`, `self_kd`, `ema`, `dropout`, ...): methods of one family
    share models and checkpoint layout."""
    summary: str
    """One line for listings."""
    cls: type[Method]
    """The implementation; `cls.from_config(cfg, iters_per_epoch)` builds it with its plan."""


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(name: str, *, family: str, summary: str) -> Callable[[MethodClass], MethodClass]:
    """Class decorator (stackable: one class may implement several names) adding `name` to the registry."""

    def add(cls: MethodClass) -> MethodClass:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice ({_REGISTRY[name].cls.__qualname__}, "
                             f"{cls.__qualname__})")
        _REGISTRY[name] = MethodSpec(name, family, summary, cls)
        return cls

    return add


def _load_builtin_methods() -> None:
    from .. import methods  # noqa: F401  (importing the package registers every built-in method)


def method_names() -> tuple[str, ...]:
    """Every registered method name, in registration order."""
    _load_builtin_methods()
    return tuple(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    _load_builtin_methods()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"method: {name!r} is not a registered method; choose one of "
                          f"{', '.join(_REGISTRY)}") from None
