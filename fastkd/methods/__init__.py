"""Each method is a small schedule of events over the shared step primitives in fastkd.engine."""

from __future__ import annotations

from ..config import ExperimentConfig
from .base import Method
from .dropout import SpacedDropout
from .ema import SpacedEMA
from .online_kd import OnlineKDFamily
from .schedule import (DropoutPlan, EmaPlan, OnlineKDPlan, SelfKDPlan, plan_dropout, plan_ema, plan_online_kd,
                       plan_self_kd)
from .self_kd import SelfKD

ONLINE_KD_METHODS = ("no_kd", "online_kd", "spaced_online_kd", "offline_kd")


def build_method(cfg: ExperimentConfig, iters_per_epoch: int) -> Method:
    """The method object for a config, given L (batches per epoch); its `plan` says what the run will do."""
    L, epochs, semantics = iters_per_epoch, cfg.train.epochs, cfg.semantics
    if cfg.method in ONLINE_KD_METHODS:
        return OnlineKDFamily(plan_online_kd(cfg.method, semantics, L, epochs, cfg.kd.interval))
    if cfg.method in ("self_kd", "spaced_self_kd"):
        return SelfKD(plan_self_kd(cfg.method, semantics, L, epochs, cfg.kd.interval), cfg)
    if cfg.method in ("ema", "spaced_ema"):
        return SpacedEMA(plan_ema(cfg.method, semantics, L, epochs, cfg.ema.interval, cfg.ema.decay), cfg)
    if cfg.method in ("dropout", "spaced_dropout"):
        d = cfg.dropout
        plan = plan_dropout(cfg.method, semantics, L, epochs, d.op, d.rate, d.space, d.cutout_input, d.length)
        if semantics == "reference" and not cfg.optim.nesterov:
            plan.notes.append("the reference trains dropout models with Nesterov SGD; optim.nesterov is false")
        return SpacedDropout(plan, cfg)
    raise ValueError(f"method {cfg.method!r} has no implementation")


__all__ = ["DropoutPlan", "EmaPlan", "Method", "OnlineKDFamily", "OnlineKDPlan", "SelfKD", "SelfKDPlan",
           "SpacedDropout", "SpacedEMA", "build_method", "plan_dropout", "plan_ema", "plan_online_kd",
           "plan_self_kd"]
