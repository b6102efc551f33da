"""Shared checks for the kernel tests: a verbose allclose and the one-case KD-loss check used by every backend."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from kd_oracles import kd_loss_oracle

from fastkd.kernels import cross_entropy, kd_loss

# Relative tolerance per input dtype: fp32 accumulation (fp64 for fp64 inputs); fp16/bf16 are limited by storing
# the gradient in the input dtype.
RTOL = {torch.float64: 1e-9, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def assert_close_verbose(actual: torch.Tensor, expected: torch.Tensor, *, rtol: float, atol: float, name: str) -> None:
    """|actual - expected| <= atol + rtol * |expected| elementwise; on failure report count, first indices, values."""
    actual64, expected64 = actual.detach().double().cpu(), expected.detach().double().cpu()
    if actual64.shape != expected64.shape:
        raise AssertionError(f"{name}: shape {tuple(actual64.shape)} != expected {tuple(expected64.shape)}")
    nan_mismatch = actual64.isnan() != expected64.isnan()
    inf_mismatch = actual64.isinf() != expected64.isinf()
    bad = nan_mismatch | inf_mismatch | ((actual64 - expected64).abs() > atol + rtol * expected64.abs())
    if not bad.any():
        return
    indices = bad.nonzero()[:5].tolist()
    details = ", ".join(
        f"{tuple(idx)}: got {actual64[tuple(idx)].item():.9g}, expected {expected64[tuple(idx)].item():.9g}"
        for idx in indices
    )
    raise AssertionError(
        f"{name}: {int(bad.sum())} of {bad.numel()} elements differ (rtol={rtol:g}, atol={atol:g}); "
        f"NaN mismatches {int(nan_mismatch.sum())}, inf mismatches {int(inf_mismatch.sum())}; first: {details}"
    )


@dataclass(frozen=True)
class KDCase:
    """One KD-loss configuration. heads=None means (B, C) student logits, else (heads, B, C)."""

    batch: int
    classes: int
    temperature: float = 3.0
    soft: str = "kl"
    reduction: str = "batchmean"
    alpha: float = 0.3
    label_smoothing: float = 0.0
    dtype: torch.dtype = torch.float32
    logit_scale: float = 3.0
    heads: int | None = None
    strided_rows: bool = False
    with_teacher: bool = True
    rtol: float | None = None  # None: RTOL[dtype]

    def __str__(self) -> str:
        return (
            f"B{self.batch}xC{self.classes}-T{self.temperature:g}-{self.soft}-{self.reduction}-a{self.alpha:g}"
            f"-ls{self.label_smoothing:g}-{str(self.dtype)[6:]}-x{self.logit_scale:g}-K{self.heads}"
            f"{'-strided' if self.strided_rows else ''}{'' if self.with_teacher else '-ce_only'}"
        )


def _logits(shape: tuple[int, ...], case: KDCase, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(base, logits): logits = base[..., :C] has non-contiguous rows when case.strided_rows."""
    pad = 5 if case.strided_rows else 0
    base = torch.randn(*shape[:-1], shape[-1] + pad, generator=generator) * case.logit_scale
    base = base.to(case.dtype)
    return base, base[..., : shape[-1]]


def check_kd_once(impl: str, case: KDCase, seed: int, device: str = "cpu") -> None:
    """Run `impl` on fresh random inputs on `device` and compare every output and dL/dz_s with the float64 oracle
    (on the CPU; tests/cuda runs the compiled Triton kernels through this with device="cuda")."""
    generator = torch.Generator().manual_seed(seed)
    student_shape = (case.batch, case.classes) if case.heads is None else (case.heads, case.batch, case.classes)
    student_base, student = _logits(student_shape, case, generator)
    _, teacher = _logits((case.batch, case.classes), case, generator)
    labels = torch.randint(0, case.classes, (case.batch,), generator=generator)
    upstream = torch.randn((), generator=generator, dtype=torch.float64)

    leaf = student_base.to(device).clone().requires_grad_(True)
    student_view = leaf[..., : case.classes]
    oracle_leaf = student.double().requires_grad_(True)
    options = dict(label_smoothing=case.label_smoothing, impl=impl)
    if case.with_teacher:
        result = kd_loss(
            student_view, teacher.to(device), labels.to(device), temperature=case.temperature, alpha=case.alpha,
            soft=case.soft, reduction=case.reduction, **options,
        )
        outputs = result._asdict()
        alpha, reduction = case.alpha, case.reduction
    else:
        reduction = "sum" if case.reduction == "sum" else "mean"
        outputs = {"total": cross_entropy(student_view, labels.to(device), reduction=reduction, **options)}
        alpha = 0.0
    expected = kd_loss_oracle(
        oracle_leaf, teacher.double() if case.with_teacher else None, labels, temperature=case.temperature,
        alpha=alpha, soft=case.soft, reduction=reduction, label_smoothing=case.label_smoothing,
    )
    outputs["total"].backward(upstream.to(device=device, dtype=outputs["total"].dtype))
    expected["total"].backward(upstream)

    rtol = case.rtol or RTOL[case.dtype]
    # Each row's loss is resolved to about rtol * T^2 (log-sums of O(1) and the T^2 factor of "kl"), and "sum"
    # adds up B rows per head: that is the absolute floor for values near 0, which have no relative scale.
    rows_summed = case.batch * (case.heads or 1) if reduction == "sum" else (case.heads or 1)
    loss_atol = rtol * rows_summed * max(1.0, case.temperature**2)
    for name, value in outputs.items():
        assert_close_verbose(value, expected[name], rtol=rtol, atol=loss_atol, name=f"{case} {impl} {name}")
        assert not value.requires_grad or name == "total", f"{name} must be detached"
    grad = leaf.grad[..., : case.classes]
    # dL/dz is a weighted difference of O(1) probabilities (e.g. p_y - 1 for CE), so fp32 resolves it only to
    # rtol times those weights, however small the difference itself.
    batch_scale = 1.0 if reduction == "sum" else 1.0 / case.batch
    soft_scale = batch_scale / (case.classes if reduction == "mean" else 1.0)
    t = case.temperature
    weights = (1 - alpha) * batch_scale + alpha * soft_scale * max(t, 1 / t)
    grad_scale = max(float(oracle_leaf.grad.abs().max()), weights * abs(float(upstream)))
    assert_close_verbose(grad, oracle_leaf.grad, rtol=rtol, atol=rtol * grad_scale, name=f"{case} {impl} grad")
    if case.strided_rows:
        assert leaf.grad[..., case.classes :].eq(0).all(), f"{case}: gradient leaked into the row padding"
