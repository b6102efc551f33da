"""Triton kernel of the fused KD loss: one program per (head, row), two sweeps over the class blocks.

Sweep 1 keeps online statistics (running maxima, sums of exponentials and the soft-term accumulators, rescaled
whenever a maximum grows, as in the online softmax of Milakov & Gimelshein 2018, arXiv:1805.02867); sweep 2
writes dL/dz_student, which the autograd Function stores for backward (Liger-Kernel's cross-entropy layout).
Imported lazily by `kd_loss`, so TRITON_INTERPRET is read when the Triton path is first used.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._kd_common import LossSpec, Rows

# Largest class block per loop iteration; larger C loops over blocks.
MAX_BLOCK_C = 4096
MIN_BLOCK_C = 16
_SOFT_CODES = {"kl": 1, "reference_prob_kl": 2, "soft_ce": 3}  # 0 = no teacher (plain CE)


@triton.jit
def _kd_loss_kernel(
    student_ptr, teacher_ptr, labels_ptr, grad_ptr, ce_ptr, soft_ptr,
    batch, classes,
    stride_student_head, stride_student_row, stride_student_col,
    stride_teacher_row, stride_teacher_col,
    stride_labels,
    inv_t, temperature, ce_grad_scale, soft_grad_scale, label_smoothing,
    SOFT: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr,
):
    """Per (head, row): CE and soft term into ce_ptr / soft_ptr ((K, B), ACC dtype) and the scaled dL/dz_student into
    grad_ptr ((K, B, C), contiguous, student dtype).

    student_ptr (K, B, C) and teacher_ptr (B, C) may have any strides; labels_ptr holds int64 class indices.
    inv_t = 1/T; ce_grad_scale = (1-alpha) * CE reduction factor; soft_grad_scale = alpha * soft reduction factor.
    SOFT: 0 no teacher, 1 T^2 KL(p_t||p_s), 2 sum p_t (log p_t - p_s) (reference online KD), 3 -sum p_t log p_s.
    ACC: accumulation dtype, fp32 (fp64 for fp64 inputs).
    """
    program = tl.program_id(0).to(tl.int64)
    head = program // batch
    row = program % batch
    student_row = student_ptr + head * stride_student_head + row * stride_student_row
    teacher_row = teacher_ptr + row * stride_teacher_row
    grad_row = grad_ptr + program * classes
    label = tl.load(labels_ptr + row * stride_labels)
    tl.device_assert((label >= 0) & (label < classes), "kd_loss: label out of range [0, C)")
    cols = tl.arange(0, BLOCK_C)

    # 1. Sweep 1: online statistics. The student shares one running max m_z between the untempered sum d_z and
    #    the tempered sum d_s (exp((z - m_z)/T)); maxima start at column 0 so every rescale factor is finite.
    m_z = tl.load(student_row).to(ACC)
    d_z = tl.zeros((), dtype=ACC)
    d_s = tl.zeros((), dtype=ACC)
    sum_z = tl.zeros((), dtype=ACC)
    m_t = m_z
    if SOFT != 0:
        m_t = tl.load(teacher_row).to(ACC)
    d_t = tl.zeros((), dtype=ACC)
    acc_diff = tl.zeros((), dtype=ACC)  # sum e_t (t - z)
    acc_teacher = tl.zeros((), dtype=ACC)  # sum e_t (t - m_t)
    acc_agree = tl.zeros((), dtype=ACC)  # sum e_t e_s
    for start in range(0, classes, BLOCK_C):
        offsets = start + cols
        mask = offsets < classes
        z = tl.load(student_row + offsets * stride_student_col, mask=mask, other=0.0).to(ACC)
        new_m_z = tl.maximum(m_z, tl.max(tl.where(mask, z, float("-inf")), axis=0))
        z_shift = tl.where(mask, z - new_m_z, float("-inf"))
        d_z = d_z * tl.exp(m_z - new_m_z) + tl.sum(tl.exp(z_shift), axis=0)
        scale_s = tl.exp((m_z - new_m_z) * inv_t)
        e_s = tl.exp(z_shift * inv_t)
        d_s = d_s * scale_s + tl.sum(e_s, axis=0)
        sum_z += tl.sum(z, axis=0)
        m_z = new_m_z
        if SOFT != 0:
            t = tl.load(teacher_row + offsets * stride_teacher_col, mask=mask, other=0.0).to(ACC)
            new_m_t = tl.maximum(m_t, tl.max(tl.where(mask, t, float("-inf")), axis=0))
            scale_t = tl.exp((m_t - new_m_t) * inv_t)
            t_shift = tl.where(mask, t - new_m_t, 0.0)
            e_t = tl.where(mask, tl.exp(t_shift * inv_t), 0.0)
            acc_teacher = (acc_teacher - (new_m_t - m_t) * d_t) * scale_t + tl.sum(e_t * t_shift, axis=0)
            acc_diff = acc_diff * scale_t + tl.sum(e_t * (t - z), axis=0)
            acc_agree = acc_agree * scale_t * scale_s + tl.sum(e_t * e_s, axis=0)
            d_t = d_t * scale_t + tl.sum(e_t, axis=0)
            m_t = new_m_t

    # 2. Row terms. log p_c = (z - m_z) - log d_z; tempered: log p_s = (z - m_z)/T - log d_s, likewise p_t.
    log_d_z = tl.log(d_z)
    log_d_s = tl.log(d_s)
    z_label = tl.load(student_row + label * stride_student_col).to(ACC)
    mean_z = sum_z / classes
    ce = (1.0 - label_smoothing) * (m_z - z_label) + label_smoothing * (m_z - mean_z) + log_d_z
    tl.store(ce_ptr + program, ce)
    inv_d_t = 0.0
    if SOFT != 0:
        inv_d_t = 1.0 / d_t
    agreement = acc_agree * inv_d_t / d_s
    if SOFT == 1:
        # sum p_t (log p_t - log p_s) = [sum p_t (t - z) - (m_t - m_z)] / T - log d_t + log d_s, times T^2.
        kl = (acc_diff * inv_d_t - (m_t - m_z)) * inv_t - tl.log(d_t) + log_d_s
        soft = kl * temperature * temperature
    elif SOFT == 2:
        soft = acc_teacher * inv_d_t * inv_t - tl.log(d_t) - agreement
    elif SOFT == 3:
        # -sum p_t (z - m_z)/T + log d_s, with z - m_z = (z - t) + (t - m_t) + (m_t - m_z).
        soft = -((acc_teacher - acc_diff) * inv_d_t + (m_t - m_z)) * inv_t + log_d_s
    else:
        soft = 0.0
    tl.store(soft_ptr + program, soft)

    # 3. Sweep 2: dL/dz = ce_scale (p_c - (1-eps) onehot - eps/C) + soft_scale * d soft / dz.
    inv_d_z = 1.0 / d_z
    inv_d_s = 1.0 / d_s
    for start in range(0, classes, BLOCK_C):
        offsets = start + cols
        mask = offsets < classes
        z = tl.load(student_row + offsets * stride_student_col, mask=mask, other=0.0).to(ACC)
        p_c = tl.exp(z - m_z) * inv_d_z
        target = tl.where(offsets == label, 1.0 - label_smoothing, 0.0) + label_smoothing / classes
        grad = ce_grad_scale * (p_c - target)
        if SOFT != 0:
            t = tl.load(teacher_row + offsets * stride_teacher_col, mask=mask, other=0.0).to(ACC)
            p_s = tl.exp((z - m_z) * inv_t) * inv_d_s
            p_t = tl.exp((t - m_t) * inv_t) * inv_d_t
            if SOFT == 1:
                grad += soft_grad_scale * temperature * (p_s - p_t)
            elif SOFT == 2:
                grad -= soft_grad_scale * inv_t * p_s * (p_t - agreement)
            else:
                grad += soft_grad_scale * inv_t * (p_s - p_t)
        tl.store(grad_row + offsets, grad.to(grad_ptr.dtype.element_ty), mask=mask)


def _alloc(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Output allocation (tests replace it with a NaN-filling version to catch elements the kernel never writes)."""
    return torch.empty(shape, dtype=dtype, device=device)


def _block_settings(classes: int) -> tuple[int, int]:
    block = max(MIN_BLOCK_C, min(triton.next_power_of_2(classes), MAX_BLOCK_C))
    num_warps = 16 if block >= 4096 else 8 if block >= 2048 else 4
    return block, num_warps


def triton_rows(student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor, spec: LossSpec) -> Rows:
    """Launch the fused kernel once for all K*B rows of (K, B, C) student logits."""
    num_heads, batch, classes = student.shape
    device = student.device
    grad = _alloc((num_heads, batch, classes), student.dtype, device)
    accumulate = torch.float64 if student.dtype == torch.float64 else torch.float32
    ce = _alloc((num_heads, batch), accumulate, device)
    soft = _alloc((num_heads, batch), accumulate, device)
    labels = labels.long()
    if teacher is None:
        teacher, soft_code, teacher_strides = student, 0, (0, 0)  # never read: SOFT == 0 skips every teacher load
    else:
        teacher = teacher.detach()
        soft_code, teacher_strides = _SOFT_CODES[spec.soft], teacher.stride()
    block, num_warps = _block_settings(classes)
    _kd_loss_kernel[(num_heads * batch,)](
        student, teacher, labels, grad, ce, soft,
        batch, classes,
        *student.stride(),
        *teacher_strides,
        labels.stride(0),
        1.0 / spec.temperature, spec.temperature, spec.ce_grad_scale, spec.soft_grad_scale, spec.label_smoothing,
        SOFT=soft_code, BLOCK_C=block, ACC=tl.float64 if accumulate == torch.float64 else tl.float32,
        num_warps=num_warps,
    )
    return Rows(ce, soft, grad)
