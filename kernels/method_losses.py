"""The methods' composite losses, built from the fused KD loss and the feature loss: the online-KD family's
student loss and the self-KD step's loss over the exits of a multi-exit network (docs/semantics.md §4.1-4.2)."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from .fused_loss import SoftTerm, cross_entropy, feature_loss, kd_loss


class KDWeights(Protocol):
    """The KD settings these losses read (the config's `kd` section)."""

    temperature: float
    alpha: float
    beta: float
    feature_loss: str


class Targets(NamedTuple):
    """What a teacher hands the student: detached feature and logits."""

    feature: torch.Tensor
    logits: torch.Tensor


def logits_ce(outputs: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """CE on the logits of a (feature, logits) model: the teacher's loss, and the student's without a teacher."""
    return cross_entropy(outputs[1], labels)


def student_kd_loss(outputs: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor, targets: Targets,
                    kd: KDWeights, semantics: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(1-alpha)*CE + alpha*soft + beta*feature, and its parts.

    reference: soft = KLDivLoss fed with probabilities (no T^2), feature = kd.feature_loss (default torch.dist);
    standard: soft = Hinton KL(p_t || p_s) * T^2, feature = MSE when kd.feature_loss is the reference's `dist`.
    """
    feature, logits = outputs
    soft_form = "reference_prob_kl" if semantics == "reference" else "kl"
    kind = kd.feature_loss
    if semantics == "standard" and kind == "dist":
        kind = "mse"
    out = kd_loss(logits, targets.logits, labels, temperature=kd.temperature, alpha=kd.alpha, soft=soft_form)
    feat = (feature_loss(feature, targets.feature, kind) if kd.beta > 0 and kind != "none"
            else out.total.new_zeros(()))
    return out.total + kd.beta * feat, {"ce": out.ce, "soft": out.soft, "feature": feat.detach()}


def self_kd_loss(logits: list[torch.Tensor], labels: torch.Tensor, adapted: list[torch.Tensor],
                 teacher_feature: torch.Tensor, kd: KDWeights, soft: SoftTerm,
                 feature_kind: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The self-KD full step's loss and its parts; exits z_k and features f_k deepest first (k = 0 teaches),
    lambda = kd.alpha, mu = kd.beta, T = kd.temperature, `adapted` = A_{k-1}(f_k) for k in F (empty: no term):
        CE(z_0, y) + sum_{k=1..3} [lambda * soft_T(z_k, z_0) + (1 - lambda) * CE(z_k, y)]
                   + mu * sum_{k in F} feature(A_{k-1}(f_k), f_0)        (z_0, f_0 detached as targets)
    """
    deepest_ce = cross_entropy(logits[0], labels)
    shallow = kd_loss(torch.stack(logits[1:]), logits[0].detach(), labels, temperature=kd.temperature,
                      alpha=kd.alpha, soft=soft)
    feature = (sum(feature_loss(a, teacher_feature, feature_kind) for a in adapted) if adapted
               else teacher_feature.new_zeros(()))
    parts = {"ce": deepest_ce, "shallow_ce": shallow.ce.sum(), "soft": shallow.soft.sum(), "feature": feature.detach()}
    return deepest_ce + shallow.total + kd.beta * feature, parts
