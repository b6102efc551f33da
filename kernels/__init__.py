"""Fused kernels of fastkd (KD loss, flat EMA) with CPU twins, and the ops over the global batch under torchrun
(`global_batch`); imported as `fastkd.kernels`."""

from .ema import EmaSchedule, FlatEMA
from .fused_loss import KDLoss, cross_entropy, kd_loss

__all__ = ["EmaSchedule", "FlatEMA", "KDLoss", "cross_entropy", "kd_loss"]
