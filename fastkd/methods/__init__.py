"""Training methods: one module per family (plan, models, loss, schedule, state), each registered by name in the
method table (`fastkd.config.methods`); importing this package attaches the built-in implementations."""

from __future__ import annotations

from ..config.methods import MethodSpec, get_method, method_names, register_method
from ..engine.method import Method, build_method
from .dropout import DropoutPlan, SpacedDropout, plan_dropout
from .ema import EmaPlan, SpacedEMA, plan_ema
from .online_kd import OnlineKDFamily, OnlineKDPlan, plan_online_kd
from .self_kd import SelfKD, SelfKDPlan, plan_self_kd
from .vit_kd import ViTFamily, ViTPlan, plan_vit


__all__ = ["DropoutPlan", "EmaPlan", "Method", "MethodSpec", "OnlineKDFamily", "OnlineKDPlan", "SelfKD",
           "SelfKDPlan", "SpacedDropout", "SpacedEMA", "build_method", "get_method", "method_names", "plan_dropout",
           "plan_ema", "plan_online_kd", "plan_self_kd", "plan_vit", "register_method", "ViTFamily", "ViTPlan"]
