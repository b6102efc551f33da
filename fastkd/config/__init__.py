"""Typed experiment schema: one YAML file per experiment, `section.key=value` overrides, one-line errors.

`schema` holds the sections, `methods` the method table (every `method:` value and its facts), `loading` reads
files and overrides, `command` is `fastkd config` (also ``python -m fastkd.config [FILE] [key=value ...]``,
``--describe`` for every key).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .command import describe
from .loading import apply_overrides, dump_config, load_config, split_config_and_overrides, validate
from .methods import method_names
from .schema import (MAX_DOWNSAMPLE_FACTOR, MAX_SEED, DataConfig, DropoutConfig, EMAConfig, ExperimentConfig, KDConfig,
                     LogConfig, ModelConfig, OptimConfig, TrainConfig, ViTConfig, WandbConfig)

__all__ = ["MAX_DOWNSAMPLE_FACTOR", "MAX_SEED", "ConfigError", "DataConfig", "DropoutConfig", "EMAConfig",
           "ExperimentConfig", "KDConfig", "LogConfig", "ModelConfig", "OptimConfig", "TrainConfig", "ViTConfig",
           "WandbConfig", "apply_overrides", "describe", "dump_config", "load_config", "split_config_and_overrides",
           "validate"]


def __getattr__(name: str) -> Any:
    """`METHODS`: every method name of the method table now (a method registered later joins it)."""
    if name == "METHODS":
        return method_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
