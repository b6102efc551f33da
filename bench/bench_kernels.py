"""CPU micro-benchmarks of fastkd.kernels against the reference code's op sequences.

    OMP_NUM_THREADS=1 python -m pytest bench/bench_kernels.py --benchmark-enable -p no:cacheprovider

bench/conftest.py prints the speed-ups (reference median / fastkd median) at the end, plus Triton-interpreter
timings for information (the interpreter runs programs one by one in Python; it says nothing about GPU speed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastkd.kernels import FlatEMA, kd_loss

TEMPERATURE, ALPHA = 3.0, 0.3  # reference online-KD defaults (docs/semantics.md §1)
KD_SHAPES = [(128, 100), (128, 200), (256, 1000)]
EMA_MODELS = ["resnet18", "resnet50"]


# ---------------------------------------------------------------- KD loss, forward + backward


def _reference_online_kd(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor) -> None:
    """The reference's student loss (docs/semantics.md §4.1, train_space.py) without the feature term."""
    soft = nn.KLDivLoss(reduction="batchmean")(
        F.softmax(student / TEMPERATURE, dim=1), F.softmax(teacher / TEMPERATURE, dim=1).detach()
    )
    loss = (1 - ALPHA) * F.cross_entropy(student, labels) + ALPHA * soft
    loss.backward()


def _reference_hinton_kd(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor) -> None:
    """Textbook Hinton KD: log-softmax student, KLDivLoss(batchmean) * T^2, plus CE."""
    soft = nn.KLDivLoss(reduction="batchmean")(
        F.log_softmax(student / TEMPERATURE, dim=1), F.softmax(teacher / TEMPERATURE, dim=1).detach()
    ) * TEMPERATURE**2
    loss = (1 - ALPHA) * F.cross_entropy(student, labels) + ALPHA * soft
    loss.backward()


def _kd_inputs(batch: int, classes: int):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(batch, classes, generator=generator).requires_grad_(True)
    teacher = torch.randn(batch, classes, generator=generator)
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return student, teacher, labels


@pytest.mark.parametrize("soft", ["reference_prob_kl", "kl"])
@pytest.mark.parametrize("impl", ["reference", "fastkd_twin"])
@pytest.mark.parametrize(("batch", "classes"), KD_SHAPES, ids=[f"{b}x{c}" for b, c in KD_SHAPES])
def test_kd_loss_forward_backward(benchmark, batch: int, classes: int, impl: str, soft: str) -> None:
    student, teacher, labels = _kd_inputs(batch, classes)
    if impl == "reference":
        reference = _reference_online_kd if soft == "reference_prob_kl" else _reference_hinton_kd

        def step() -> None:
            reference(student, teacher, labels)
    else:

        def step() -> None:
            kd_loss(student, teacher, labels, temperature=TEMPERATURE, alpha=ALPHA, soft=soft, impl="twin").total.backward()

    group = f"kd {soft} {batch}x{classes}"
    benchmark.group = group
    benchmark(step)


# ---------------------------------------------------------------- EMA update


def _model(name: str) -> nn.Module:
    from fastkd.models import create_model

    return create_model(name, num_classes=100)


@pytest.mark.parametrize("impl", ["reference", "fastkd_twin", "foreach_lerp"])
@pytest.mark.parametrize("model_name", EMA_MODELS)
def test_ema_update(benchmark, model_name: str, impl: str) -> None:
    model = _model(model_name)
    decay = 0.999
    group = f"ema {model_name}"
    benchmark.group = group
    if impl == "fastkd_twin":
        ema = FlatEMA(model, decay, impl="twin")
        benchmark(ema.update)
    else:
        average = [p.detach().clone() for p in model.parameters()]
        params = [p.detach() for p in model.parameters()]
        if impl == "reference":

            def update() -> None:  # the reference's per-parameter Python loop (docs/semantics.md §6)
                for e, p in zip(average, params):
                    e.mul_(decay).add_(p, alpha=1 - decay)
        else:

            def update() -> None:  # timm ModelEmaV3 style: one multi-tensor lerp over the parameter lists
                torch._foreach_lerp_(average, params, 1 - decay)

        benchmark(update)


# ---------------------------------------------------------------- Triton interpreter, for information


def test_triton_interpreter_timings(request, bench_note) -> None:
    """Wall time of one interpreted KD-loss forward+backward (128x100) and one EMA update (resnet18)."""
    pytest.importorskip("triton", reason="triton is not installed")
    if not request.config.getoption("benchmark_enable", default=False):
        pytest.skip("interpreter timings are recorded only with --benchmark-enable")
    script = textwrap.dedent(
        """
        import time, torch
        from fastkd.kernels import FlatEMA, kd_loss
        from fastkd.models import create_model
        student = torch.randn(128, 100, requires_grad=True)
        teacher, labels = torch.randn(128, 100), torch.randint(0, 100, (128,))
        kd_loss(student, teacher, labels, impl="triton").total.backward()
        start = time.perf_counter()
        kd_loss(student, teacher, labels, temperature=3.0, alpha=0.3, impl="triton").total.backward()
        kd_seconds = time.perf_counter() - start
        ema = FlatEMA(create_model("resnet18", num_classes=100), 0.999, impl="triton")
        start = time.perf_counter()
        ema.update()
        print(kd_seconds, time.perf_counter() - start)
        """
    )
    environment = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    kd_seconds, ema_seconds = map(float, result.stdout.split()[-2:])
    bench_note(f"Triton interpreter: kd_loss 128x100 fwd+bwd {kd_seconds:.2f} s, resnet18 EMA update {ema_seconds:.2f} s")
