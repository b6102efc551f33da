"""Types shared by the KD-loss backends: the resolved loss description and the per-row results they return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

SOFT_TERMS = ("kl", "reference_prob_kl", "soft_ce")


@dataclass(frozen=True)
class LossSpec:
    """Everything a backend needs besides the tensors; all plain Python numbers (no device scalars to sync on).

    ce_scale / soft_scale are the reduction factors (1/B, 1/(B*C) or 1) applied to row sums of each term.
    """

    temperature: float
    alpha: float
    soft: str
    label_smoothing: float
    ce_scale: float
    soft_scale: float
    has_teacher: bool

    @property
    def ce_grad_scale(self) -> float:
        return (1.0 - self.alpha) * self.ce_scale

    @property
    def soft_grad_scale(self) -> float:
        return self.alpha * self.soft_scale

    def total(self, ce_rows: torch.Tensor, soft_rows: torch.Tensor) -> torch.Tensor:
        """Reduced weighted total over all heads and rows."""
        ce_part = ce_rows.sum() * self.ce_grad_scale
        if not self.has_teacher:
            return ce_part
        return ce_part + soft_rows.sum() * self.soft_grad_scale


class Rows(NamedTuple):
    """Backend output.

    ce, soft: (K, B) unreduced row terms (soft includes T^2 for "kl"; zeros without a teacher), in the
        accumulation dtype: fp32, or fp64 for fp64 inputs.
    grad: dL_total/dz_student, (K, B, C) in the student's dtype, already scaled by alpha and the reduction.
    """

    ce: torch.Tensor
    soft: torch.Tensor
    grad: torch.Tensor
