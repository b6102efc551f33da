"""Fused kernels of fastkd (KD loss, flat EMA) with CPU twins; imported as `fastkd.kernels`."""

from .kd_loss import KDLoss, cross_entropy, kd_loss

__all__ = ["KDLoss", "cross_entropy", "kd_loss"]
