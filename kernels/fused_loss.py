"""Fused knowledge-distillation loss: hard-label CE + soft term + dL/dz_student in one pass.

Layering follows Liger-Kernel's cross-entropy: backends (`_kd_twin` on CPU, `_kd_triton` on GPU) return per-row
terms and the already-scaled student gradient; one `autograd.Function` stores that gradient and only rescales it
in backward; `kd_loss` / `cross_entropy` validate arguments and dispatch. `impl="reference"` is the unfused torch
op sequence of the reference code: fastkd's one eager KD loss, a readable statement of the semantics that
tests/kernels checks against the float64 oracle and the benchmarks (fastkd/bench/kernels.py, bench/) time as the
baseline of the fused backends.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from ._kd_common import SOFT_TERMS, LossSpec, Rows
from ._kd_twin import twin_rows
from .global_batch import unsquared_distance

SoftTerm = Literal["kl", "reference_prob_kl", "soft_ce"]
Reduction = Literal["batchmean", "mean", "sum"]
Impl = Literal["auto", "triton", "twin", "reference"]

_REDUCTIONS = ("batchmean", "mean", "sum")
_IMPLS = ("auto", "triton", "twin", "reference")


class KDLoss(NamedTuple):
    """Result of `kd_loss`.

    total: scalar, differentiable wrt the student logits only.
    ce, soft: detached reduced terms; shape () for (B, C) students, (K,) for (K, B, C) students.
    """

    total: torch.Tensor
    ce: torch.Tensor
    soft: torch.Tensor


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    alpha: float = 0.5,
    soft: SoftTerm = "kl",
    reduction: Reduction = "batchmean",
    label_smoothing: float = 0.0,
    impl: Impl = "auto",
) -> KDLoss:
    """`(1 - alpha) * CE(z_s, y) + alpha * soft(z_s, z_t)` with the student gradient computed in the forward pass.

    Args:
        student_logits: (B, C) or (K, B, C) for K exits distilled from one teacher (the total sums the K heads);
            fp32/fp16/bf16 accumulate in fp32, fp64 in fp64 (the Triton kernel then gets T, alpha and the
            reduction factors as fp32 scalars).
        teacher_logits: (B, C); treated as a constant (never receives a gradient).
        labels: (B,) integer class indices in [0, C).
        temperature: T > 0 for the soft term; the hard-label CE always uses the untempered student logits.
        alpha: weight of the soft term, in [0, 1].
        soft: "kl" = KL(p_t || p_s) * T^2 (Hinton); "reference_prob_kl" = the reference online-KD term
            KLDivLoss(softmax_T(z_s), softmax_T(z_t)), i.e. sum_c p_t (log p_t - p_s), no T^2 (docs/semantics.md §4.1);
            "soft_ce" = -sum_c p_t log p_s, no T^2 (self KD, docs/semantics.md §4.2).
        reduction: "batchmean" (row sums / B), "mean" (soft sum / (B*C), CE mean over B: with soft="kl" this is
            the ViT form of docs/semantics.md §4.3) or "sum".
        label_smoothing: epsilon of the hard-label CE, as in `torch.nn.functional.cross_entropy`.
        impl: "auto" (Triton on CUDA, the CPU twin otherwise), "triton", "twin" or "reference".

    Example:
        >>> out = kd_loss(torch.randn(8, 10, requires_grad=True), torch.randn(8, 10), torch.randint(0, 10, (8,)),
        ...               temperature=3.0, alpha=0.3, soft="reference_prob_kl")
        >>> out.total.backward()
    """
    if soft not in SOFT_TERMS:
        raise ValueError(f"soft={soft!r} is not one of {SOFT_TERMS}")
    student, squeeze = _as_heads(student_logits, "student_logits")
    _check_teacher(teacher_logits, student)
    spec = _make_spec(student, labels, temperature, alpha, soft, reduction, label_smoothing, has_teacher=True)
    return _run(student, teacher_logits, labels, spec, impl, squeeze)


def cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    reduction: Literal["mean", "sum"] = "mean",
    impl: Impl = "auto",
) -> torch.Tensor:
    """Hard-label cross-entropy through the fused kernel (no teacher); (K, B, C) logits sum the K heads' losses."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"cross_entropy reduction={reduction!r} must be 'mean' or 'sum'")
    heads, squeeze = _as_heads(logits, "logits")
    spec = _make_spec(heads, labels, 1.0, 0.0, "kl", reduction, label_smoothing, has_teacher=False)
    return _run(heads, None, labels, spec, impl, squeeze).total


def feature_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """`dist` is the reference's torch.dist: the unsquared L2 norm of the whole B x f difference (docs/semantics.md
    §4.1). `ce` is the reference's ``nn.CrossEntropyLoss()(student, teacher)``: the raw teacher features are the
    class-probability targets (not normalised), mean over the batch of -sum_j t_j * log_softmax(s)_j."""
    if student.dtype != torch.float64:
        student, teacher = student.float(), teacher.float()
    if kind == "dist":
        return unsquared_distance(student, teacher)
    if kind == "mse":
        return F.mse_loss(student, teacher)
    if kind == "l1":
        return F.l1_loss(student, teacher)
    if kind == "smoothl1":
        return F.smooth_l1_loss(student, teacher)
    if kind == "ce":
        return F.cross_entropy(student, teacher)
    return student.new_zeros(())


def _run(
    student: torch.Tensor,
    teacher: torch.Tensor | None,
    labels: torch.Tensor,
    spec: LossSpec,
    impl: Impl,
    squeeze: bool,
) -> KDLoss:
    backend = _resolve_impl(impl, student)
    labels = labels.long()
    if backend == "reference":
        ce_rows, soft_rows, total = _reference_rows(student, teacher, labels, spec)
    else:
        rows_fn = twin_rows if backend == "twin" else _triton_rows()
        total, ce_rows, soft_rows = _FusedKD.apply(student, teacher, labels, spec, rows_fn)
    ce = ce_rows.sum(-1).mul_(spec.ce_scale)
    soft = soft_rows.sum(-1).mul_(spec.soft_scale)
    if squeeze:
        ce, soft = ce[0], soft[0]
    return KDLoss(total, ce, soft)


class _FusedKD(torch.autograd.Function):
    """Stores the backend's dL/dz_student; backward is one multiply by grad_output (no sync, no branch on values)."""

    @staticmethod
    def forward(ctx, student, teacher, labels, spec: LossSpec, rows_fn):  # type: ignore[override]
        rows: Rows = rows_fn(student, teacher, labels, spec)
        ctx.save_for_backward(rows.grad)
        total = spec.total(rows.ce, rows.soft)  # = sum over heads of (1-a) CE + a soft
        ctx.mark_non_differentiable(rows.ce, rows.soft)
        return total, rows.ce, rows.soft

    @staticmethod
    def backward(ctx, grad_total, _grad_ce, _grad_soft):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_total.to(grad.dtype), None, None, None, None


def _reference_rows(
    student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor, spec: LossSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference code's unfused op sequence (softmax, log, KLDivLoss, CE), differentiated by autograd."""
    num_heads, batch, classes = student.shape
    logits = student.double() if student.dtype == torch.float64 else student.float()
    ce_rows = F.cross_entropy(
        logits.reshape(-1, classes),
        labels.repeat(num_heads),
        label_smoothing=spec.label_smoothing,
        reduction="none",
    ).view(num_heads, batch)
    if teacher is None:
        soft_rows = torch.zeros_like(ce_rows)
    else:
        temperature = spec.temperature
        target = F.softmax(teacher.detach().to(logits.dtype) / temperature, dim=-1).expand_as(logits)
        if spec.soft == "reference_prob_kl":
            soft_rows = F.kl_div(F.softmax(logits / temperature, dim=-1), target, reduction="none").sum(-1)
        elif spec.soft == "kl":
            log_student = F.log_softmax(logits / temperature, dim=-1)
            soft_rows = F.kl_div(log_student, target, reduction="none").sum(-1) * temperature**2
        else:
            soft_rows = -(target * F.log_softmax(logits / temperature, dim=-1)).sum(-1)
    total = spec.total(ce_rows, soft_rows)
    return ce_rows.detach(), soft_rows.detach(), total


def _triton_rows():
    """Imported lazily so TRITON_INTERPRET is read when (and only if) the Triton path is first used."""
    from ._kd_triton import triton_rows

    return triton_rows


def _resolve_impl(impl: Impl, student: torch.Tensor) -> str:
    if impl not in _IMPLS:
        raise ValueError(f"impl={impl!r} is not one of {_IMPLS}")
    if impl == "auto":
        return "triton" if student.is_cuda else "twin"
    return impl


def _as_heads(logits: torch.Tensor, name: str) -> tuple[torch.Tensor, bool]:
    if logits.dim() == 2:
        return logits.unsqueeze(0), True
    if logits.dim() == 3:
        return logits, False
    raise ValueError(f"{name} must have shape (B, C) or (K, B, C), got {tuple(logits.shape)}")


def _check_teacher(teacher: torch.Tensor, student: torch.Tensor) -> None:
    if teacher.shape != student.shape[1:]:
        raise ValueError(
            f"teacher_logits must have shape (B, C) = {tuple(student.shape[1:])} to match the student, "
            f"got {tuple(teacher.shape)}"
        )
    if teacher.device != student.device:
        raise ValueError(f"teacher_logits is on {teacher.device} but student_logits on {student.device}")
    if not teacher.is_floating_point():
        raise TypeError(f"teacher_logits must be floating point, got {teacher.dtype}")


def _make_spec(
    student: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    soft: str,
    reduction: str,
    label_smoothing: float,
    *,
    has_teacher: bool,
) -> LossSpec:
    _, batch, classes = student.shape
    if not student.is_floating_point():
        raise TypeError(f"logits must be floating point (fp32/fp16/bf16), got {student.dtype}")
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape (B,) = ({batch},), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class indices (int64), got {labels.dtype}")
    if labels.device != student.device:
        raise ValueError(f"labels are on {labels.device} but logits on {student.device}")
    if classes < 2 or batch < 1:
        raise ValueError(f"need B >= 1 rows and C >= 2 classes, got B={batch}, C={classes}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not one of {_REDUCTIONS}")
    soft_scale = {"batchmean": 1.0 / batch, "mean": 1.0 / (batch * classes), "sum": 1.0}[reduction]
    ce_scale = 1.0 if reduction == "sum" else 1.0 / batch
    return LossSpec(
        temperature=float(temperature),
        alpha=float(alpha),
        soft=soft,
        label_smoothing=float(label_smoothing),
        ce_scale=ce_scale,
        soft_scale=soft_scale,
        has_teacher=has_teacher,
    )
