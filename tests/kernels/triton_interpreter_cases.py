"""Triton kernels run by the Triton interpreter on CPU tensors, against the float64 oracles.

Not collected directly: `test_kernels_triton.py` runs this file in a fresh process with TRITON_INTERPRET=1, which
must be set before triton is first imported (triton.language's own helpers are decorated at import time). The
interpreter executes programs one by one in Python, so the case list is a deliberate subset: every C at B=3, every
B and T at two C values, dtypes/reductions/variants on small shapes, and one 128 x 21843 case.
"""

from __future__ import annotations

import itertools
import os
import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kd_oracles import ema_closed_form
from kernel_checks import RTOL, KDCase, assert_close_verbose, check_kd_once
from torch import nn

from fastkd.kernels import FlatEMA

if os.environ.get("TRITON_INTERPRET") != "1":
    raise RuntimeError("run this file through tests/kernels/test_kernels_triton.py (it needs TRITON_INTERPRET=1 set "
                       "before triton is imported)")

CLASSES = (2, 10, 100, 200, 1000, 1001, 21843)
SOFT_TERMS = ("kl", "reference_prob_kl", "soft_ce")
REDUCTIONS = ("batchmean", "mean", "sum")

CASES = [
    # every C at (B=3, T=3), each soft term; the remaining C at B=128
    *(KDCase(batch=3, classes=c, soft=s) for c, s in itertools.product(CLASSES, SOFT_TERMS)),
    *(KDCase(batch=128, classes=c, soft=s) for c, s in zip((2, 100, 200, 1000), SOFT_TERMS + ("kl",))),
    # every (B, T) at C = 10 and C = 1001, soft term and reduction rotating
    *(KDCase(batch=b, classes=c, temperature=t, soft=SOFT_TERMS[i % 3], reduction=REDUCTIONS[i % 3])
      for i, (b, c, t) in enumerate(itertools.product((1, 3, 128), (10, 1001), (1.0, 3.0, 4.0)))),
    # low precision and reductions
    *(KDCase(batch=3, classes=1001, soft=s, dtype=d, reduction=r)
      for (s, r), d in itertools.product(zip(SOFT_TERMS, REDUCTIONS), (torch.float16, torch.bfloat16))),
    # logits up to about +-1e4
    *(KDCase(batch=3, classes=c, temperature=t, soft=s, logit_scale=2500.0)
      for c, t, s in itertools.product((10, 21843), (1.0, 4.0), SOFT_TERMS)),
    # K exits against one teacher, non-contiguous rows, label smoothing, CE without a teacher
    *(KDCase(batch=5, classes=200, soft=s, heads=3, strided_rows=True, label_smoothing=0.1) for s in SOFT_TERMS),
    KDCase(batch=4, classes=1000, dtype=torch.bfloat16, heads=2, strided_rows=True, soft="soft_ce"),
    # fp64 accumulates in fp64, but T, alpha, eps and the scales reach the kernel as fp32 scalars
    KDCase(batch=3, classes=5000, dtype=torch.float64, heads=2, soft="reference_prob_kl", label_smoothing=0.1, rtol=1e-6),
    *(KDCase(batch=3, classes=c, with_teacher=False, reduction=r, label_smoothing=0.1, heads=h)
      for c, r, h in [(2, "mean", None), (1001, "sum", 3)]),
    KDCase(batch=128, classes=21843, soft="kl", temperature=1.0, reduction="mean"),
]


@pytest.fixture(scope="module", autouse=True)
def interpreted_kernels():
    """The kernel modules, after checking that triton.jit really produced interpreted kernels."""
    from triton.runtime.interpreter import InterpretedFunction

    from fastkd.kernels import _ema_triton, _kd_triton

    assert isinstance(_kd_triton._kd_loss_kernel, InterpretedFunction), "Triton interpreter is not active"
    assert isinstance(_ema_triton._ema_lerp_kernel, InterpretedFunction), "Triton interpreter is not active"
    return _kd_triton, _ema_triton


@pytest.fixture
def poisoned_outputs(interpreted_kernels, monkeypatch):
    """Kernel outputs start as NaN, so any element the kernel fails to write shows up as a mismatch."""
    kd_module, _ = interpreted_kernels
    monkeypatch.setattr(kd_module, "_alloc", lambda shape, dtype, device: torch.full(shape, float("nan"), dtype=dtype, device=device))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_triton_kd_loss_matches_oracle(case: KDCase, poisoned_outputs) -> None:
    check_kd_once("triton", case, seed=zlib.crc32(str(case).encode()))


@settings(max_examples=12, deadline=None)
@given(
    batch=st.integers(1, 6),
    classes=st.integers(2, 5000),
    temperature=st.sampled_from((0.5, 1.0, 3.0, 4.0)),
    soft=st.sampled_from(SOFT_TERMS),
    reduction=st.sampled_from(REDUCTIONS),
    alpha=st.floats(0.0, 1.0),
    logit_scale=st.sampled_from((0.1, 3.0, 2500.0)),
    heads=st.sampled_from((None, 2)),
    strided_rows=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_triton_kd_loss_random_cases(interpreted_kernels, seed: int, **fields) -> None:
    check_kd_once("triton", KDCase(**fields), seed=seed)


def test_triton_and_twin_agree_on_the_same_inputs(interpreted_kernels) -> None:
    from fastkd.kernels import kd_loss

    generator = torch.Generator().manual_seed(5)
    student, teacher = torch.randn(2, 6, 300, generator=generator), torch.randn(6, 300, generator=generator)
    labels = torch.randint(0, 300, (6,), generator=generator)
    outputs = {impl: kd_loss(student, teacher, labels, temperature=4.0, soft="reference_prob_kl", impl=impl)
               for impl in ("triton", "twin")}
    for name, got, want in zip(outputs["triton"]._fields, outputs["triton"], outputs["twin"]):
        assert_close_verbose(got, want, rtol=1e-5, atol=1e-6, name=name)


def _mixed_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(37, 129), nn.BatchNorm1d(129), nn.Linear(129, 5001))  # odd sizes, > 1 block


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("policy", ["params_only", "params_and_buffers"])
def test_triton_ema_matches_closed_form(interpreted_kernels, dtype: torch.dtype, policy: str) -> None:
    model = _mixed_model().to(dtype)
    decay = 0.999 if dtype == torch.float64 else 0.75  # float64: 1 - d must not pass through float32
    ema = FlatEMA(model, decay, policy=policy, impl="triton")
    with torch.no_grad():  # the EMA differs from the source everywhere, so an unwritten element cannot match
        for tensor in ema.module.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(1.0)
    tracked = list(model.parameters()) + (list(model[1].buffers())[:2] if policy == "params_and_buffers" else [])
    averaged = list(ema.module.parameters()) + (list(ema.module[1].buffers())[:2] if policy == "params_and_buffers" else [])
    initial = [a.detach().double().clone() for a in averaged]
    history: list[list[torch.Tensor]] = [[] for _ in tracked]
    for _ in range(3):
        with torch.no_grad():
            for values, tensor in zip(history, tracked):
                tensor.add_(torch.randn_like(tensor))
                values.append(tensor.detach().clone())
        ema.update()
    for index, (average, start, values) in enumerate(zip(averaged, initial, history)):
        expected = ema_closed_form(start, values, decay)
        tolerance = 1e-12 if dtype == torch.float64 else RTOL[dtype]  # a float32 1 - d is off by ~5e-11 per update
        assert_close_verbose(average, expected, rtol=tolerance, atol=tolerance, name=f"{policy} tensor {index}")


def test_triton_ema_reads_the_decay_scalar_at_run_time(interpreted_kernels) -> None:
    model = _mixed_model()
    ema = FlatEMA(model, 0.9, impl="triton")
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    expected = [0.5 * a.double() + 0.5 * p.double() for a, p in zip(ema.module.parameters(), model.parameters())]
    ema.set_decay(0.5)
    ema.update()
    for index, (average, want) in enumerate(zip(ema.module.parameters(), expected)):
        assert_close_verbose(average, want, rtol=1e-6, atol=1e-6, name=f"param {index}")
