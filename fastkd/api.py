"""The Python API, for notebooks and scripts: what `fastkd train | plan | eval | config` do, with the same
validation and the same one-line errors (raised as `fastkd.errors.FastkdError` instead of printed).

Overrides are keyword arguments named by the config key, with dots (`**{"train.epochs": 1}`) or double underscores
(`train__epochs=1`); a config is a YAML path, a packaged config's name (`fastkd config list`) or a loaded config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import ExperimentConfig, apply_overrides, load_config as _load_file, validate
from .errors import ConfigError
from .runs import build_plan, evaluate_checkpoint, new_run_folder, prepare_run, train_run

ConfigSource = str | Path | ExperimentConfig | None
"""A YAML file, a packaged config's name, an ExperimentConfig, or None for every default."""


def load_config(config: ConfigSource = None, **overrides: Any) -> ExperimentConfig:
    """The validated config: `config` with `overrides` applied, as `fastkd config CONFIG key=value ...` prints it.

    Example: ``fastkd.load_config("paper/online_kd/cifar100/resnet18_s1.5", data__root="/data")``
    """
    texts = _override_texts(overrides)
    if isinstance(config, ExperimentConfig):
        return validate(apply_overrides(config.model_dump(mode="json"), texts), "the given config", texts)
    if config is not None and not isinstance(config, (str, Path)):
        raise ConfigError(f"config: expected a YAML path, a packaged config's name or an ExperimentConfig, "
                          f"got a {type(config).__name__}")
    return _load_file(config, texts)


def train(config: ConfigSource, *, resume: str | Path | None = None, quiet: bool = False,
          **overrides: Any) -> dict[str, Any]:
    """Train a run, as `fastkd train` does, and return its summary (summary.json: best and final test top-1 of
    every output, epochs done, run folder).

    Args:
        config: the run's config (see `load_config`); None with `resume` reads the run's own config.yaml.
        resume: a run folder holding last.pt, continued exactly where it stopped.
        quiet: no progress bar, per-epoch lines or results table.
        overrides: config keys to change, e.g. ``**{"train.epochs": 1}`` or ``train__epochs=1``.

    Example: ``summary = fastkd.train("demo", train__epochs=1, output_dir="runs")``
    """
    if isinstance(config, ExperimentConfig):
        if resume:
            raise ConfigError("resume: pass the run's config file or None (its config.yaml), not a loaded config")
        cfg = load_config(config, **overrides)
        run_dir = new_run_folder(cfg)
    else:
        cfg, run_dir = prepare_run(None if config is None else str(config), _override_texts(overrides),
                                   resume=resume)
    return train_run(cfg, run_dir, resume=bool(resume), quiet=quiet, label="fastkd")


def plan(config: ConfigSource, **overrides: Any) -> dict[str, Any]:
    """What the run would do (iterations per epoch, replays, ...), as `fastkd plan --json` prints it."""
    return build_plan(load_config(config, **overrides)).as_dict()


def evaluate(checkpoint: str | Path, **overrides: Any) -> dict[str, float]:
    """Test-split metrics of a run's last.pt or best.pt, as `fastkd eval --json` prints them (top-1/top-5 as
    fractions); overrides change where and how it evaluates, e.g. ``data__root="/data"``."""
    return evaluate_checkpoint(checkpoint, _override_texts(overrides)).results


def _override_texts(overrides: dict[str, Any]) -> list[str]:
    """`key=value` texts as the command line spells them; values written as JSON, which the YAML reader parses
    back to the same value (a string stays a string, None becomes null)."""
    return [f"{key.replace('__', '.')}={json.dumps(_plain(value))}" for key, value in overrides.items()]


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
