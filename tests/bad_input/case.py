"""The shared shape of one bad-input case, and the small fixtures the case modules build their inputs from.

Every case module (cases_config.py, cases_run.py, cases_data.py, cases_compat.py) exports ``CASES: list[BadInput]``;
tests/bad_input/test_bad_input.py runs each one through ``fastkd.cli.main`` in-process.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

KINDS = ("config", "override", "cli", "output", "run", "checkpoint", "data", "compat")


@dataclass(frozen=True)
class BadInput:
    """One malformed input and the one-line answer fastkd must give it."""

    id: str
    """Unique, named by what is wrong, e.g. "config-duplicate-top-level-key"."""
    kind: str
    """The class of bad input: one of KINDS."""
    argv: Callable[[Path], list[str]]
    """Given a fresh empty folder (also the cwd), writes the files the case needs and returns the fastkd argv."""
    message: str
    """Regex that must be re.search'ed in the single error line."""
    exit_code: int = 2
    """2 = bad input, 1 = I/O failure."""


TINY_DIGITS_CONFIG = """\
name: tiny
method: spaced_online_kd
output_dir: runs
seed: 0
data:
  dataset: digits
  batch_size: 256
  eval_batch_size: 512
model:
  downsample_factor: 64.0
  student_downsample_factor: 64.0
kd:
  interval: 1.0
train:
  epochs: 1
  device: cpu
  max_steps: 2
  progress: false
  tensorboard: false
"""
"""A valid config that trains in about a second on the CPU (digits, width/8 ResNet-18s, two steps)."""


def write_yaml(folder: Path, text: str, name: str = "c.yaml") -> Path:
    """Write `text` as a config file in `folder`; returns its path."""
    path = folder / name
    path.write_text(text)
    return path


def write_bytes(folder: Path, data: bytes, name: str = "c.yaml") -> Path:
    """Write raw bytes (binary or non-UTF-8 'YAML') to `folder/name`; returns its path."""
    path = folder / name
    path.write_bytes(data)
    return path


def tiny_config(folder: Path, *extra_lines: str) -> Path:
    """TINY_DIGITS_CONFIG (plus `extra_lines` appended verbatim) written to `folder/c.yaml`."""
    return write_yaml(folder, TINY_DIGITS_CONFIG + "".join(line + "\n" for line in extra_lines))


_finished_runs: dict[tuple[str, ...], Path] = {}
_cache_root: Path | None = None


def finished_run(folder: Path, *overrides: str) -> Path:
    """A copy, in `folder/run`, of a tiny run trained to its end (config.yaml, last.pt, best.pt, metrics.csv ...).

    The run is trained once per process per set of overrides (on top of TINY_DIGITS_CONFIG) in a private temporary
    folder and copied for each case, so cases may damage their copy freely.
    """
    global _cache_root
    key = tuple(overrides)
    if key not in _finished_runs:
        from fastkd.config import load_config
        from fastkd.engine.trainer import Trainer

        if _cache_root is None:
            _cache_root = Path(tempfile.mkdtemp(prefix="fastkd-bad-input-runs-"))
            atexit.register(shutil.rmtree, _cache_root, ignore_errors=True)
        source = _cache_root / f"run{len(_finished_runs)}"
        config = tiny_config(_cache_root)
        cfg = load_config(config, [f"output_dir={_cache_root}", f"name={source.name}", "train.max_steps=null",
                                       *overrides])
        Trainer(cfg, source, quiet=True).fit()
        _finished_runs[key] = source
    target = folder / "run"
    shutil.copytree(_finished_runs[key], target)
    return target
