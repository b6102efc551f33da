"""Kernel micro-benchmarks of `fastkd bench`: the fused KD loss against the reference's unfused op sequence, and the
flat-buffer EMA against the reference's per-parameter loop and against one `torch._foreach_lerp_`.

On CUDA the fused side is the Triton kernel, on a CPU its twin (the same signature, torch ops). Each time is the
best of three blocks of `repeats` back-to-back calls, synchronised at both ends, divided by `repeats`: on a GPU that
measures throughput rather than launch-plus-sync latency.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import FlatEMA, kd_loss
from ..models import create_model
from .presets import ONLINE_KD, KernelSizes

TRIALS = 3


def time_per_call(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Seconds per call: the best of TRIALS blocks of `repeats` calls after `repeats` warm-up calls."""
    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(repeats):
        fn()
    synchronize()
    best = math.inf
    for _ in range(TRIALS):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        synchronize()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def unfused_kd_step(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, soft: str,
                    temperature: float, alpha: float) -> None:
    """The reference's student loss as separate ops, forward and backward: `reference_prob_kl` is online_KD's
    KLDivLoss fed probabilities, `kl` the textbook log-softmax KL times T^2."""
    if soft == "reference_prob_kl":
        student_side = F.softmax(student / temperature, dim=1)
        scale = 1.0
    else:
        student_side = F.log_softmax(student / temperature, dim=1)
        scale = temperature ** 2
    soft_term = nn.KLDivLoss(reduction="batchmean")(student_side, F.softmax(teacher / temperature, dim=1).detach())
    ((1 - alpha) * F.cross_entropy(student, labels) + alpha * scale * soft_term).backward()


def bench_kd_loss(batch: int, classes: int, soft: str, device: torch.device, repeats: int) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(batch, classes, generator=generator).to(device).requires_grad_(True)
    teacher = torch.randn(batch, classes, generator=generator).to(device)
    labels = torch.randint(0, classes, (batch,), generator=generator).to(device)
    temperature, alpha = ONLINE_KD["temperature"], ONLINE_KD["alpha"]
    fused = time_per_call(lambda: kd_loss(student, teacher, labels, temperature=temperature, alpha=alpha,
                                          soft=soft).total.backward(), device, repeats)
    unfused = time_per_call(lambda: unfused_kd_step(student, teacher, labels, soft, temperature, alpha), device,
                            repeats)
    return {"batch": batch, "classes": classes, "soft": soft, "fused_impl": "triton" if device.type == "cuda" else "twin",
            "fused_us": fused * 1e6, "unfused_us": unfused * 1e6, "speedup": unfused / fused}


def bench_ema(model_name: str, device: torch.device, repeats: int, decay: float = 0.999) -> dict[str, Any]:
    model = create_model(model_name, num_classes=100).to(device)
    flat = FlatEMA(model, decay)
    average = [p.detach().clone() for p in model.parameters()]
    params = [p.detach() for p in model.parameters()]

    def per_parameter_loop() -> None:  # the reference's EMA update
        for e, p in zip(average, params):
            e.mul_(decay).add_(p, alpha=1 - decay)

    flat_s = time_per_call(flat.update, device, repeats)
    loop_s = time_per_call(per_parameter_loop, device, repeats)
    foreach_s = time_per_call(lambda: torch._foreach_lerp_(average, params, 1 - decay), device, repeats)
    return {"model": model_name, "tensors": len(params), "parameters": sum(p.numel() for p in params),
            "flat_impl": "triton" if device.type == "cuda" else "twin", "flat_us": flat_s * 1e6,
            "per_parameter_loop_us": loop_s * 1e6, "foreach_lerp_us": foreach_s * 1e6,
            "speedup_vs_loop": loop_s / flat_s, "speedup_vs_foreach_lerp": foreach_s / flat_s}


def bench_kernels(sizes: KernelSizes, device: torch.device) -> dict[str, Any]:
    """Every KD-loss shape in both soft-term forms, and the EMA update of every listed model."""
    return {
        "repeats": sizes.repeats,
        "kd_loss": [bench_kd_loss(batch, classes, soft, device, sizes.repeats)
                    for batch, classes in sizes.kd_shapes for soft in ("reference_prob_kl", "kl")],
        "ema": [bench_ema(name, device, sizes.repeats) for name in sizes.ema_models],
    }
