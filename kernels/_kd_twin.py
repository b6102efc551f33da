"""CPU twin of the fused KD-loss kernel: the same per-row math as `_kd_triton`, in as few torch ops as possible.

All softmaxes (untempered student for CE, tempered student, tempered teacher) run as ONE fused `softmax` over a
stacked, max-shifted buffer, so each exponential is evaluated once per element (the reference sequence spends
5-6 transcendental passes, among them a scalar `xlogy`). Row log-sums come for free from the softmax output:
log sum_c exp(x_c - max) = -log(max_c p_c), and p_max lies in [1/C, 1], so it never underflows. Soft terms are
row dot products of the teacher probabilities with shifted logits, which keeps cancellation small at +-1e4 logits.
"""

from __future__ import annotations

import torch

from ._kd_common import LossSpec, Rows


def twin_rows(
    student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor, spec: LossSpec
) -> Rows:
    """Per-row CE / soft terms and the scaled dL/dz_student for (K, B, C) student logits."""
    num_heads, batch, classes = student.shape
    inv_t = 1.0 / spec.temperature
    tempered_student = spec.has_teacher and spec.temperature != 1.0
    eps = spec.label_smoothing
    ce_grad_scale = spec.ce_grad_scale

    # 1. Planes [z | t/T | z/T (if T != 1)], every row shifted by its max BEFORE scaling by 1/T, so the
    #    dominant entries stay exact even for logits of +-1e4.
    planes = num_heads + (1 if spec.has_teacher else 0) + (num_heads if tempered_student else 0)
    # fp32 accumulation for fp16/bf16/fp32 inputs; float64 inputs (exact oracle runs) stay float64.
    acc_dtype = torch.float64 if student.dtype == torch.float64 else torch.float32
    shifted = torch.empty((planes, batch, classes), dtype=acc_dtype, device=student.device)
    shifted[:num_heads].copy_(student)
    if spec.has_teacher:
        shifted[num_heads].copy_(teacher.detach())
    untempered = shifted[: num_heads + (1 if spec.has_teacher else 0)]
    untempered.sub_(untempered.amax(-1, keepdim=True))
    if spec.has_teacher and spec.temperature != 1.0:
        shifted[num_heads].mul_(inv_t)
    if tempered_student:
        torch.mul(shifted[:num_heads], inv_t, out=shifted[num_heads + 1 :])

    # 2. One softmax for all planes; log_sum = log sum_c exp(shifted) = -log p_max (no extra exp pass).
    probs = torch.softmax(shifted, dim=-1)
    neg_log_sum = probs.amax(-1).log_()

    # 3. CE = log_sum - (1-eps) shifted_y - eps mean_c(shifted), on the untempered plane.
    index = labels.long().view(1, batch, 1).expand(num_heads, batch, 1)
    z_shift = shifted[:num_heads]
    ce = torch.add(neg_log_sum[:num_heads], z_shift.gather(-1, index).squeeze(-1), alpha=1.0 - eps).neg_()
    if eps:
        ce.sub_(z_shift.mean(-1), alpha=eps)

    grad_planes = probs[:num_heads]
    if spec.has_teacher:
        soft, grad = _soft_term_and_grad(shifted, probs, neg_log_sum, num_heads, tempered_student, spec)
    else:
        soft, grad = torch.zeros_like(ce), grad_planes.mul_(ce_grad_scale)

    # 4. Hard-label part of the CE gradient: - (1-eps) onehot(y) - eps/C (the softmax term is already in grad).
    grad.scatter_(-1, index, -(1.0 - eps) * ce_grad_scale, reduce="add")
    if eps:
        grad.sub_(eps * ce_grad_scale / classes)
    return Rows(ce, soft, grad.to(student.dtype))


def _soft_term_and_grad(
    shifted: torch.Tensor,
    probs: torch.Tensor,
    neg_log_sum: torch.Tensor,
    num_heads: int,
    tempered_student: bool,
    spec: LossSpec,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft rows (K, B) and grad = ce_grad_scale * softmax(z) + soft gradient, built in the CE-probability planes.

    With x = shifted tempered logits and ls = log_softmax: log p_t - log p_s = (x_t - x_s) + nls_t - nls_s,
    where nls = -log_sum.
    """
    temperature, inv_t = spec.temperature, 1.0 / spec.temperature
    student_plane = slice(num_heads + 1, None) if tempered_student else slice(0, num_heads)
    x_s, p_s, nls_s = shifted[student_plane], probs[student_plane], neg_log_sum[student_plane]
    x_t, p_t, nls_t = shifted[num_heads], probs[num_heads], neg_log_sum[num_heads]
    grad = probs[:num_heads]
    soft_grad_scale = spec.soft_grad_scale

    if spec.soft == "reference_prob_kl":
        # sum p_t log p_t - <p_t, p_s>;  d/dz_s = -(1/T) p_s (p_t - <p_t, p_s>).
        agreement = torch.linalg.vecdot(p_t, p_s)
        soft = (torch.linalg.vecdot(p_t, x_t) + nls_t) - agreement
        soft_grad = (p_t - agreement.unsqueeze(-1)).mul_(p_s)
        grad.mul_(spec.ce_grad_scale).add_(soft_grad, alpha=-inv_t * soft_grad_scale)
        return soft, grad
    if spec.soft == "kl":
        # T^2 KL(p_t || p_s);  d/dz_s = T (p_s - p_t).
        soft = torch.linalg.vecdot(p_t, x_t - x_s).add_(nls_t).sub_(nls_s).mul_(temperature * temperature)
        soft_weight = temperature * soft_grad_scale
    else:
        # soft_ce = -sum p_t log p_s;  d/dz_s = (1/T) (p_s - p_t).
        soft = torch.linalg.vecdot(p_t, x_s).add_(nls_s).neg_()
        soft_weight = inv_t * soft_grad_scale
    if tempered_student:
        grad.mul_(spec.ce_grad_scale).add_(p_s, alpha=soft_weight)
    else:
        grad.mul_(spec.ce_grad_scale + soft_weight)
    grad.sub_(p_t, alpha=soft_weight)
    return soft, grad
