"""Training methods: one module per family (plan, models, loss, schedule, state), each registered by name in the
method table (`fastkd.config.methods`); importing this package attaches the built-in implementations."""

from __future__ import annotations

from ..config.methods import MethodSpec, get_method, method_names, register_method
from ..engine.method import Method, build_method
from ..plans.dropout import DropoutPlan, plan_dropout
from ..plans.ema import EmaPlan, plan_ema
from ..plans.online_kd import OnlineKDPlan, plan_online_kd
from ..plans.self_kd import SelfKDPlan, plan_self_kd
from ..plans.vit_kd import ViTPlan, plan_vit
from .dropout import SpacedDropout
from .ema import SpacedEMA
from .online_kd import OnlineKDFamily
from .self_kd import SelfKD
from .vit_kd import ViTFamily


__all__ = ["DropoutPlan", "EmaPlan", "Method", "MethodSpec", "OnlineKDFamily", "OnlineKDPlan", "SelfKD",
           "SelfKDPlan", "SpacedDropout", "SpacedEMA", "build_method", "get_method", "method_names", "plan_dropout",
           "plan_ema", "plan_online_kd", "plan_self_kd", "plan_vit", "register_method", "ViTFamily", "ViTPlan"]
