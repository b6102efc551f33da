"""The method table: every `method:` value and what is known about it, below the schema and free of torch.

`BUILTIN` holds the facts of the built-in methods (the config, `fastkd reproduce`, `fastkd bench` and compat read
them here), among them the module that implements each: `MethodSpec.implementation()` imports it on first use (as
an entry point is loaded), and its `@register_method(name)` attaches the class. So the engine builds any method
from the table without importing `fastkd.methods`. A new method registers its facts and its class in one module:
`@register_method(name, family=..., summary=...)` on the class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Any, Callable, TypeVar

from ..errors import ConfigError

Cls = TypeVar("Cls", bound=type)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    family: str
    """The module family that implements it (`online_kd`, `self_kd`, `ema`, `dropout`, `vit_kd`): methods of one
    family share models and checkpoint layout."""
    summary: str
    """One line for listings."""
    section: str | None = None
    """The config section holding its hyper-parameters (`kd`, `ema`, `dropout`, `vit`), if any."""
    model_keys: tuple[str, ...] = ("student",)
    """The `model.*` keys it reads."""
    unspaced: str | None = None
    """Its unspaced twin: the same optimizer steps per iteration on average, from step 1 (reproduce's time probe)."""
    spacing: str | None = None
    """The dotted key of its spacing when 0 is not allowed (the unspaced twin is the method for 0)."""
    module: str | None = None
    """The module whose `@register_method(name)` implements a built-in method (`fastkd.methods.<family>`)."""
    cls: Any = None
    """The implementation (a `fastkd.engine.method.Method` subclass); `cls.from_config(cfg, iters_per_epoch)` builds
    it with its plan. None until its module is imported."""

    def implementation(self) -> Any:
        """The class, importing the built-in module that registers it on first use."""
        if self.cls is not None:
            return self.cls
        if self.module is not None:
            importlib.import_module(self.module)
            return _REGISTRY[self.name].cls
        raise ConfigError(f"method {self.name!r} has no implementation: register a class for it")


_TWO_NETS = ("teacher", "student", "downsample_factor")
BUILTIN: tuple[MethodSpec, ...] = tuple(replace(spec, module=f"fastkd.methods.{spec.family}") for spec in (
    MethodSpec("no_kd", "online_kd", "the student alone", "kd"),
    MethodSpec("online_kd", "online_kd", "teacher and student step together (s = 0)", "kd", _TWO_NETS),
    MethodSpec("spaced_online_kd", "online_kd",
               "the teacher trains I = int(L*s) iterations ahead; the student replays its batches", "kd", _TWO_NETS,
               unspaced="online_kd", spacing="kd.interval"),
    MethodSpec("offline_kd", "online_kd", "the teacher trains first, then teaches the student", "kd", _TWO_NETS,
               unspaced="online_kd"),
    MethodSpec("self_kd", "self_kd", "the deepest exit teaches the shallow ones every iteration", "kd"),
    MethodSpec("spaced_self_kd", "self_kd", "the deepest exit teaches the shallow ones every I = int(L*s) iterations",
               "kd", unspaced="self_kd", spacing="kd.interval"),
    MethodSpec("ema", "ema", "weight averaging after every optimizer step", "ema"),
    MethodSpec("spaced_ema", "ema", "weight averaging every int(s*L) iterations (or at random)", "ema",
               unspaced="ema"),
    MethodSpec("dropout", "dropout", "dropout (or MaxDropout) at a constant rate", "dropout"),
    MethodSpec("spaced_dropout", "dropout",
               "dropout rate p*|sin(pi*t/S)| (or random), MaxDropout, spaced input cutout", "dropout",
               unspaced="dropout", spacing="dropout.space"),
    MethodSpec("vit_base", "vit_kd", "ViT: the student alone (CE)", "vit"),
    MethodSpec("vit_online_kd", "vit_kd", "ViT: teacher and student train together", "vit"),
    MethodSpec("vit_offline_kd", "vit_kd", "ViT: the student learns from a frozen trained teacher", "vit",
               unspaced="vit_online_kd"),
    MethodSpec("vit_spaced_kd", "vit_kd",
               "ViT: the teacher trains S = ceil(L*s) steps ahead, then the student replays S steps", "vit",
               unspaced="vit_online_kd"),
))

_REGISTRY: dict[str, MethodSpec] = {spec.name: spec for spec in BUILTIN}


def register_method(name: str, **facts: Any) -> Callable[[Cls], Cls]:
    """Class decorator (stackable: one class may implement several names): `name` is implemented by the class.
    A built-in name takes its facts from `BUILTIN`; a new one gives them here (at least `family` and `summary`)."""

    def add(cls: Cls) -> Cls:
        known = _REGISTRY.get(name)
        if known is not None and known.cls is not None and known.cls is not cls:
            raise ValueError(f"method {name!r} is registered twice ({known.cls.__qualname__}, {cls.__qualname__})")
        if known is None:
            _REGISTRY[name] = MethodSpec(name, cls=cls, **facts)
        else:
            if facts:
                raise ValueError(f"method {name!r} is built in: its facts are in fastkd.config.methods.BUILTIN")
            _REGISTRY[name] = replace(known, cls=cls)
        return cls

    return add


def method_names() -> tuple[str, ...]:
    """Every method name, built-in first, then the registered ones in registration order."""
    return tuple(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"method: {name!r} is not a registered method; choose one of "
                          f"{', '.join(_REGISTRY)}") from None
