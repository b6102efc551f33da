"""Fused kernels of fastkd (KD loss, flat EMA) with CPU twins; imported as `fastkd.kernels`."""

from .ema import EmaSchedule, FlatEMA
from .fused_loss import KDLoss, cross_entropy, kd_loss

__all__ = ["EmaSchedule", "FlatEMA", "KDLoss", "cross_entropy", "kd_loss"]
