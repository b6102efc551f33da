"""Typed experiment schema: one YAML file per experiment, `section.key=value` overrides, one-line errors.

`schema` holds the sections, `loading` reads files and overrides, `command` is `fastkd config` (also
``python -m fastkd.config [FILE] [key=value ...]``, ``--describe`` for every key).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .command import describe
from .loading import apply_overrides, dump_config, load_config, split_config_and_overrides, validate
from .schema import (
    MAX_DOWNSAMPLE_FACTOR,
    MAX_SEED,
    DataConfig,
    DropoutConfig,
    EMAConfig,
    ExperimentConfig,
    KDConfig,
    LogConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    ViTConfig,
    WandbConfig,
)

__all__ = ["MAX_DOWNSAMPLE_FACTOR", "MAX_SEED", "ConfigError", "DataConfig", "DropoutConfig", "EMAConfig",
           "ExperimentConfig", "KDConfig", "LogConfig", "ModelConfig", "OptimConfig", "TrainConfig", "ViTConfig",
           "WandbConfig", "apply_overrides", "describe", "dump_config", "load_config", "split_config_and_overrides",
           "validate"]


def __getattr__(name: str) -> Any:
    """`METHODS`: the registered method names, read from `fastkd.methods.registry` on first use (importing the
    method modules here would import torch and the models with the schema)."""
    if name == "METHODS":
        from ..methods.registry import method_names

        return method_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
