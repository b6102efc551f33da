"""fastkd: a high-throughput trainer for spacing-effect knowledge distillation.

The Python API (`train`, `plan`, `evaluate`, `load_config`; see fastkd.api) is loaded on first use, so
`import fastkd` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate", "load_config", "plan", "train"]

if TYPE_CHECKING:
    from .api import evaluate, load_config, plan, train


def __getattr__(name: str) -> Any:
    if name in ("evaluate", "load_config", "plan", "train"):
        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
