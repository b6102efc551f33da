"""The `ce` feature loss: the reference's `-feature_loss CE`, i.e. `nn.CrossEntropyLoss()(feature_s, feature_t)`
with the raw teacher features as (unnormalised) class-probability targets."""

from __future__ import annotations

import torch

from fastkd.config import KDConfig
from fastkd.kernels import feature_loss
from fastkd.kernels.method_losses import Targets, student_kd_loss
from fastkd.reference.compat import resolve

ONLINE = ["-net_teacher", "resnet18", "-net_student", "resnet18"]


def soft_target_ce(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_j t_j * log_softmax(s)_j, written out."""
    log_probs = student - torch.logsumexp(student, dim=1, keepdim=True)
    return -(teacher * log_probs).sum(dim=1).mean()


def test_ce_feature_loss_is_cross_entropy_with_the_teacher_features_as_targets():
    torch.manual_seed(0)
    student = torch.randn(6, 32, dtype=torch.float64, requires_grad=True)
    teacher = torch.relu(torch.randn(6, 32, dtype=torch.float64))  # pooled post-ReLU features: not probabilities
    got = feature_loss(student, teacher, "ce")
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, soft_target_ce(student, teacher), rtol=1e-15, atol=0)
    torch.testing.assert_close(got, torch.nn.CrossEntropyLoss()(student, teacher), rtol=0, atol=0)
    got.backward()
    # d/ds of the loss: (softmax(s) * sum_j t_j - t) / B.
    expected_grad = (torch.softmax(student, 1) * teacher.sum(1, keepdim=True) - teacher) / 6
    torch.testing.assert_close(student.grad, expected_grad, rtol=1e-12, atol=1e-15)


def test_ce_is_kept_under_both_semantics():
    torch.manual_seed(1)
    feature, logits = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64)
    targets = Targets(torch.rand(4, 8, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64))
    labels = torch.tensor([0, 3, 9, 2])
    kd = KDConfig(feature_loss="ce")
    for semantics in ("reference", "standard"):
        _, parts = student_kd_loss((feature, logits), labels, targets, kd, semantics)
        torch.testing.assert_close(parts["feature"], soft_target_ce(feature, targets.feature), rtol=1e-15, atol=0)


def test_compat_maps_feature_loss_ce():
    cfg = resolve("train_space", [*ONLINE, "-feature_loss", "CE"]).config
    assert cfg.kd.feature_loss == "ce"
    assert cfg.name.endswith("_CE_cifar100")  # the reference's run name keeps its spelling
