"""Each method is a small schedule of events over the shared step primitives in fastkd.engine."""

from __future__ import annotations

from ..config import ExperimentConfig
from .base import Method
from .online_kd import OnlineKDFamily
from .schedule import OnlineKDPlan, plan_online_kd

ONLINE_KD_METHODS = ("no_kd", "online_kd", "spaced_online_kd", "offline_kd")


def build_method(cfg: ExperimentConfig, iters_per_epoch: int) -> Method:
    """The method object for a config, given L (batches per epoch)."""
    if cfg.method in ONLINE_KD_METHODS:
        return OnlineKDFamily(plan_online_kd(cfg.method, cfg.semantics, iters_per_epoch, cfg.train.epochs,
                                             cfg.kd.interval))
    raise ValueError(f"method {cfg.method!r} has no implementation")


__all__ = ["Method", "OnlineKDFamily", "OnlineKDPlan", "build_method", "plan_online_kd"]
