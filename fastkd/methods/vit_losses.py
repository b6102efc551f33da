"""The ViT family's loss terms (docs/semantics.md §5.4, R26): the student's KD loss on one set of logits or on a
distilled DeiT's two heads, the zero-weighted term that keeps a model in a shared AdamW's step, and the teacher's
input resize."""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ViTConfig
from ..engine.steps import Batch
from ..kernels import cross_entropy, kd_loss


def student_loss(out: Any, labels: torch.Tensor, teacher_logits: torch.Tensor,
                 vit: ViTConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(1-w)*CE + w*KL(p_t||p_s)*T^2/(B*C) (the fused loss's `kl` + `mean` form); `out` is one set of logits or
    (CE logits, KD logits)."""
    w, temperature = vit.logit_weight, vit.temperature
    if not isinstance(out, tuple):
        result = kd_loss(out, teacher_logits, labels, temperature=temperature, alpha=w, soft="kl", reduction="mean")
        return result.total, {"ce": result.ce, "kd": result.soft}
    ce_logits, kd_logits = out
    ce = cross_entropy(ce_logits, labels)
    kd = kd_loss(kd_logits, teacher_logits, labels, temperature=temperature, alpha=1.0, soft="kl",
                 reduction="mean").total
    return (1 - w) * ce + w * kd, {"ce": ce.detach(), "kd": kd.detach()}


def zero_term(params: Iterable[nn.Parameter]) -> torch.Tensor:
    """0 x the parameters' sum: added to a loss it gives them zero (not absent) gradients, so a shared AdamW
    decays and moves them on that step (the reference's behaviour, R26)."""
    return 0.0 * torch.stack([p.sum() for p in params]).sum()


def teacher_input(batch: Batch, size: int | None) -> Batch:
    """The batch bilinearly resized to vit.teacher_img_size (a no-op at the student's size)."""
    if size is None or tuple(batch.x.shape[-2:]) == (size, size):
        return batch
    return batch._replace(x=F.interpolate(batch.x, size=(size, size), mode="bilinear", align_corners=False))
