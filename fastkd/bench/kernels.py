"""Kernel micro-benchmarks: the fused KD loss against its eager op sequence, and the flat-buffer EMA against the
reference's per-parameter loop and against one `torch._foreach_lerp_`.

Each timed case is defined once, here (`kd_loss_step`, `ema_step`): `fastkd bench` times them with `time_per_call`
(presets with kernel sizes), the pytest-benchmark suite bench/bench_kernels.py with pytest-benchmark. The eager KD
loss is `kd_loss(impl="reference")` (fastkd.kernels: the reference's unfused ops, checked against the float64
oracle by tests/kernels), so both sides go through the same front end and differ only in the backend.

On CUDA the fused side is the Triton kernel, on a CPU its twin (the same signature, torch ops). Each time of
`fastkd bench` is the best of three blocks of `repeats` back-to-back calls, synchronised at both ends, divided by
`repeats`: on a GPU that measures throughput rather than launch-plus-sync latency.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
from torch import nn

from ..kernels import FlatEMA, kd_loss
from ..models import create_model
from .presets import ONLINE_KD, KernelSizes

TRIALS = 3
KD_SOFT_TERMS = ("reference_prob_kl", "kl")
"""The soft terms timed: online_KD's KLDivLoss fed probabilities, and the textbook log-softmax KL times T^2."""
EMA_DECAY = 0.999
EMA_BASELINES = ("reference", "foreach_lerp")
"""`ema_step` impls that are not FlatEMA: the reference's per-parameter loop, and one multi-tensor lerp."""


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


def kd_loss_step(batch: int, classes: int, soft: str, device: torch.device, impl: str) -> Callable[[], None]:
    """One KD-loss forward+backward on seeded random logits with online KD's T and alpha. `impl` is kd_loss's:
    "reference" (the eager op sequence), or a fused backend ("auto", "twin", "triton")."""
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(batch, classes, generator=generator).to(device).requires_grad_(True)
    teacher = torch.randn(batch, classes, generator=generator).to(device)
    labels = torch.randint(0, classes, (batch,), generator=generator).to(device)
    temperature, alpha = ONLINE_KD["temperature"], ONLINE_KD["alpha"]

    def step() -> None:
        kd_loss(student, teacher, labels, temperature=temperature, alpha=alpha, soft=soft, impl=impl).total.backward()

    return step


def ema_step(model: nn.Module, impl: str, decay: float = EMA_DECAY) -> Callable[[], None]:
    """One EMA update of `model`'s parameters: "reference" = the reference's per-parameter Python loop,
    "foreach_lerp" = one `torch._foreach_lerp_` over the parameter lists (timm ModelEmaV3 style), else FlatEMA with
    that impl ("auto", "twin", "triton"; it makes the parameters views of its flat buffer, as in training)."""
    if impl not in EMA_BASELINES:
        return FlatEMA(model, decay, impl=impl).update
    average = [p.detach().clone() for p in model.parameters()]
    params = [p.detach() for p in model.parameters()]
    if impl == "foreach_lerp":
        return lambda: torch._foreach_lerp_(average, params, 1 - decay)

    def per_parameter_loop() -> None:
        for e, p in zip(average, params):
            e.mul_(decay).add_(p, alpha=1 - decay)

    return per_parameter_loop


def bench_kd_loss(batch: int, classes: int, soft: str, device: torch.device, repeats: int) -> dict[str, Any]:
    fused = time_per_call(kd_loss_step(batch, classes, soft, device, "auto"), device, repeats)
    unfused = time_per_call(kd_loss_step(batch, classes, soft, device, "reference"), device, repeats)
    return {"batch": batch, "classes": classes, "soft": soft, "fused_impl": "triton" if device.type == "cuda" else "twin",
            "fused_us": fused * 1e6, "unfused_us": unfused * 1e6, "speedup": unfused / fused}


def bench_ema(model_name: str, device: torch.device, repeats: int) -> dict[str, Any]:
    """The flat EMA first, so that (as in training) the baselines average views of its flat buffer."""
    model = create_model(model_name, num_classes=100).to(device)
    flat_s = time_per_call(ema_step(model, "auto"), device, repeats)
    loop_s = time_per_call(ema_step(model, "reference"), device, repeats)
    foreach_s = time_per_call(ema_step(model, "foreach_lerp"), device, repeats)
    params = list(model.parameters())
    return {"model": model_name, "tensors": len(params), "parameters": sum(p.numel() for p in params),
            "flat_impl": "triton" if device.type == "cuda" else "twin", "flat_us": flat_s * 1e6,
            "per_parameter_loop_us": loop_s * 1e6, "foreach_lerp_us": foreach_s * 1e6,
            "speedup_vs_loop": loop_s / flat_s, "speedup_vs_foreach_lerp": foreach_s / flat_s}


def bench_kernels(sizes: KernelSizes, device: torch.device) -> dict[str, Any]:
    """Every KD-loss shape in both soft-term forms, and the EMA update of every listed model."""
    return {
        "repeats": sizes.repeats,
        "kd_loss": [bench_kd_loss(batch, classes, soft, device, sizes.repeats)
                    for batch, classes in sizes.kd_shapes for soft in KD_SOFT_TERMS],
        "ema": [bench_ema(name, device, sizes.repeats) for name in sizes.ema_models],
    }
