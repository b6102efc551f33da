"""Training methods: one module per family (plan, models, loss, schedule, state), each registered by name in
`fastkd.methods.registry`; importing this package registers the built-in families."""

from __future__ import annotations

from ..config import ExperimentConfig
from .base import Method
from .registry import MethodSpec, get_method, method_names, register_method

# The import order is the registration order, which is the order `method_names()` lists.
from .online_kd import OnlineKDFamily, OnlineKDPlan, plan_online_kd  # noqa: E402  isort: skip
from .self_kd import SelfKD, SelfKDPlan, plan_self_kd  # noqa: E402  isort: skip
from .ema import EmaPlan, SpacedEMA, plan_ema  # noqa: E402  isort: skip
from .dropout import DropoutPlan, SpacedDropout, plan_dropout  # noqa: E402  isort: skip
from .vit_kd import ViTFamily, ViTPlan, plan_vit  # noqa: E402  isort: skip


def build_method(cfg: ExperimentConfig, iters_per_epoch: int) -> Method:
    """The registered method of a config, given L (batches per epoch); its `plan` says what the run will do."""
    return get_method(cfg.method).cls.from_config(cfg, iters_per_epoch)


__all__ = ["DropoutPlan", "EmaPlan", "Method", "MethodSpec", "OnlineKDFamily", "OnlineKDPlan", "SelfKD",
           "SelfKDPlan", "SpacedDropout", "SpacedEMA", "build_method", "get_method", "method_names", "plan_dropout",
           "plan_ema", "plan_online_kd", "plan_self_kd", "plan_vit", "register_method", "ViTFamily", "ViTPlan"]
