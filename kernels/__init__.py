"""Fused kernels of fastkd (KD loss, flat EMA) with CPU twins, and the ops over the global batch under torchrun
(`global_batch`); imported as `fastkd.kernels`."""

from .ema import FlatEMA
from .fused_loss import KDLoss, cross_entropy, feature_loss, kd_loss

__all__ = ["FlatEMA", "KDLoss", "cross_entropy", "feature_loss", "kd_loss"]
