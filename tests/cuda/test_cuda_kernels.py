"""The Triton KD-loss and flat-EMA kernels compiled for the device, against the float64 oracles: loss and gradient,
odd shapes, fp32/bf16/fp16 inputs (the CPU suites only run them through the Triton interpreter)."""

from __future__ import annotations

import itertools
import zlib

import pytest
import torch
from kd_oracles import ema_closed_form
from kernel_checks import RTOL, KDCase, assert_close_verbose, check_kd_once
from torch import nn

from fastkd.kernels import FlatEMA

SOFT_TERMS = ("kl", "reference_prob_kl", "soft_ce")
REDUCTIONS = ("batchmean", "mean", "sum")
LOW_PRECISION = (torch.float16, torch.bfloat16)

CASES = [
    # odd (B, C), each soft term, fp32: single rows, C = 2, non-power-of-two C, a C larger than one block
    *(KDCase(batch=b, classes=c, soft=s)
      for (b, c), s in itertools.product(((1, 2), (3, 1001), (127, 100), (7, 21843)), SOFT_TERMS)),
    # every reduction at three temperatures
    *(KDCase(batch=33, classes=257, temperature=t, reduction=r, soft=SOFT_TERMS[i % 3])
      for i, (t, r) in enumerate(itertools.product((1.0, 3.0, 4.0), REDUCTIONS))),
    # fp16 and bf16 inputs, gradients stored in the input dtype
    *(KDCase(batch=b, classes=c, soft=s, dtype=d)
      for (b, c), s, d in itertools.product(((5, 1001), (128, 100)), SOFT_TERMS, LOW_PRECISION)),
    # large logits, K exits against one teacher, non-contiguous rows, label smoothing, CE without a teacher
    *(KDCase(batch=3, classes=c, temperature=4.0, soft=s, logit_scale=2500.0) for c, s in zip((10, 21843), SOFT_TERMS)),
    *(KDCase(batch=5, classes=200, soft=s, heads=3, strided_rows=True, label_smoothing=0.1) for s in SOFT_TERMS),
    KDCase(batch=4, classes=1000, dtype=torch.bfloat16, heads=2, strided_rows=True, soft="soft_ce"),
    KDCase(batch=3, classes=5000, dtype=torch.float64, heads=2, soft="reference_prob_kl", label_smoothing=0.1,
           rtol=1e-6),
    *(KDCase(batch=3, classes=c, with_teacher=False, reduction=r, label_smoothing=0.1, heads=h, dtype=d)
      for c, r, h, d in [(2, "mean", None, torch.float32), (1001, "sum", 3, torch.bfloat16)]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_compiled_kd_loss_matches_the_oracle(case: KDCase) -> None:
    check_kd_once("triton", case, seed=zlib.crc32(str(case).encode()), device="cuda")


def test_auto_picks_the_triton_kernels_on_cuda() -> None:
    """The engine calls both with impl="auto": on CUDA that must be the kernels checked above, not the twins."""
    from fastkd.kernels import fused_loss

    student = torch.randn(4, 10, device="cuda")
    assert fused_loss._resolve_impl("auto", student) == "triton"
    assert FlatEMA(nn.Linear(3, 3).cuda(), 0.9)._use_triton(student)


def _mixed_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(37, 129), nn.BatchNorm1d(129), nn.Linear(129, 5001))  # odd sizes, > 1 block


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("policy", ["params_only", "params_and_buffers"])
def test_compiled_ema_matches_the_closed_form(dtype: torch.dtype, policy: str) -> None:
    model = _mixed_model().to(device="cuda", dtype=dtype)
    decay = 0.999 if dtype == torch.float64 else 0.75  # float64: 1 - d must not pass through float32
    ema = FlatEMA(model, decay, policy=policy, impl="triton")
    with torch.no_grad():  # the EMA differs from the source everywhere, so an unwritten element cannot match
        for tensor in ema.module.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(1.0)
    tracked = list(model.parameters()) + (list(model[1].buffers())[:2] if policy == "params_and_buffers" else [])
    averaged = list(ema.module.parameters()) + (
        list(ema.module[1].buffers())[:2] if policy == "params_and_buffers" else [])
    initial = [a.detach().double().cpu() for a in averaged]
    history: list[list[torch.Tensor]] = [[] for _ in tracked]
    for _ in range(3):
        with torch.no_grad():
            for values, tensor in zip(history, tracked):
                tensor.add_(torch.randn_like(tensor))
                values.append(tensor.detach().cpu())
        ema.update()
    for index, (average, start, values) in enumerate(zip(averaged, initial, history)):
        expected = ema_closed_form(start, values, decay)
        tolerance = 1e-12 if dtype == torch.float64 else RTOL[dtype]  # a float32 1 - d is off by ~5e-11 per update
        assert_close_verbose(average, expected, rtol=tolerance, atol=tolerance, name=f"{policy} tensor {index}")


def test_compiled_ema_reads_the_decay_scalar_at_run_time() -> None:
    model = _mixed_model().cuda()
    ema = FlatEMA(model, 0.9, impl="triton")
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    expected = [0.5 * a.double().cpu() + 0.5 * p.double().cpu()
                for a, p in zip(ema.module.parameters(), model.parameters())]
    ema.set_decay(0.5)
    ema.update()
    for index, (average, want) in enumerate(zip(ema.module.parameters(), expected)):
        assert_close_verbose(average, want, rtol=1e-6, atol=1e-6, name=f"param {index}")
