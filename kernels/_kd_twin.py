"""CPU twin of the fused KD-loss kernel: the same per-row math as `_kd_triton`, in as few torch calls as possible.

All softmaxes (untempered student for CE, tempered teacher, tempered student) run as ONE fused `softmax` over a
stacked, max-shifted buffer, so each exponential is evaluated once per element (the reference sequence spends
5-6 transcendental passes, among them a scalar `xlogy`). Row log-sums come for free from the softmax output:
log sum_c exp(x_c - max) = -log(max_c p_c), and p_max lies in [1/C, 1], so it never underflows. Soft terms are
row dot products of the teacher probabilities with shifted logits, which keeps cancellation small at +-1e4 logits.
On these small tensors each torch call costs more than its arithmetic, hence the stacking and the single `split`.
"""

from __future__ import annotations

import torch

from ._kd_common import LossSpec, Rows


def twin_rows(
    student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor, spec: LossSpec
) -> Rows:
    """Per-row CE / soft terms and the scaled dL/dz_student for (K, B, C) student logits."""
    num_heads, batch, classes = student.shape
    has_teacher = teacher is not None
    tempered = has_teacher and spec.temperature != 1.0
    eps = spec.label_smoothing
    ce_grad_scale = spec.ce_grad_scale
    plane_counts = [num_heads, 1 if has_teacher else 0, num_heads if tempered else 0]

    # 1. Planes [z | t | z] (the last two divided by T), every row shifted by its max BEFORE scaling, so the
    #    dominant entries stay exact even for logits of +-1e4. fp32 accumulation for fp16/bf16/fp32; fp64 stays.
    accumulate = torch.float64 if student.dtype == torch.float64 else torch.float32
    if has_teacher:
        planes = (student, teacher.detach().unsqueeze(0), student) if tempered else (student, teacher.detach().unsqueeze(0))
        shifted = torch.cat(planes).to(accumulate)  # cat always copies, so the in-place ops below are safe
    else:
        shifted = student.to(accumulate, copy=True)
    shifted.sub_(shifted.amax(-1, keepdim=True))
    if has_teacher and spec.temperature != 1.0:
        shifted[num_heads:].mul_(1.0 / spec.temperature)

    # 2. One softmax for all planes; log_sum = log sum_c exp(shifted) = -log p_max (no extra exp pass).
    probs = torch.softmax(shifted, dim=-1)
    neg_log_sum = probs.amax(-1).log_()
    z_plane, t_plane, s_plane = shifted.split(plane_counts)
    p_z, p_t, p_s = probs.split(plane_counts)
    nls_z, nls_t, nls_s = neg_log_sum.split(plane_counts)

    # 3. CE = log_sum - (1-eps) shifted_y - eps mean_c(shifted), on the untempered plane.
    index = labels.view(1, batch, 1).expand(num_heads, batch, 1)
    ce = torch.add(nls_z, z_plane.gather(-1, index).squeeze(-1), alpha=1.0 - eps).neg_()
    if eps:
        ce.sub_(z_plane.mean(-1), alpha=eps)

    if has_teacher:
        if not tempered:
            s_plane, p_s, nls_s = z_plane, p_z, nls_z
        soft, grad = _soft_term_and_grad(spec, t_plane, p_t, nls_t, s_plane, p_s, nls_s, p_z)
    else:
        soft, grad = torch.zeros_like(ce), p_z.mul_(ce_grad_scale)

    # 4. Hard-label part of the CE gradient: - (1-eps) onehot(y) - eps/C (the softmax term is already in grad).
    grad.scatter_(-1, index, -(1.0 - eps) * ce_grad_scale, reduce="add")
    if eps:
        grad.sub_(eps * ce_grad_scale / classes)
    return Rows(ce, soft, grad.to(student.dtype))


def _soft_term_and_grad(
    spec: LossSpec,
    x_t: torch.Tensor,
    p_t: torch.Tensor,
    nls_t: torch.Tensor,
    x_s: torch.Tensor,
    p_s: torch.Tensor,
    nls_s: torch.Tensor,
    p_z: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft rows (K, B) and grad = ce_grad_scale * p_z + soft gradient, built in place in p_z.

    x = shifted tempered logits, p = their softmax, nls = -log_sum, so log p = x + nls and
    log p_t - log p_s = (x_t - x_s) + nls_t - nls_s. Teacher planes are (1, B, ...) and broadcast over the
    K student heads; p_s may be p_z itself (T == 1).
    """
    temperature, inv_t = spec.temperature, 1.0 / spec.temperature
    soft_grad_scale = spec.soft_grad_scale
    if spec.soft == "reference_prob_kl":
        # sum p_t log p_t - <p_t, p_s>;  d/dz_s = -(1/T) p_s (p_t - <p_t, p_s>).
        agreement = torch.linalg.vecdot(p_t, p_s)
        soft = torch.linalg.vecdot(p_t, x_t).add_(nls_t) - agreement  # (1, B) teacher term broadcast over K
        soft_grad = (p_t - agreement.unsqueeze(-1)).mul_(p_s)
        grad = p_z.mul_(spec.ce_grad_scale).add_(soft_grad, alpha=-inv_t * soft_grad_scale)
        return soft, grad
    if spec.soft == "kl":
        # T^2 KL(p_t || p_s);  d/dz_s = T (p_s - p_t).
        soft = torch.linalg.vecdot(p_t, x_t - x_s).add_(nls_t).sub_(nls_s).mul_(temperature * temperature)
        soft_weight = temperature * soft_grad_scale
    else:
        # soft_ce = -sum p_t log p_s;  d/dz_s = (1/T) (p_s - p_t).
        soft = torch.linalg.vecdot(p_t, x_s).add_(nls_s).neg_()
        soft_weight = inv_t * soft_grad_scale
    if p_s is p_z:
        grad = p_z.mul_(spec.ce_grad_scale + soft_weight)
    else:
        grad = p_z.mul_(spec.ce_grad_scale).add_(p_s, alpha=soft_weight)
    return soft, grad.sub_(p_t, alpha=soft_weight)
