"""CPU micro-benchmarks of fastkd.kernels against the reference code's op sequences.

    OMP_NUM_THREADS=1 python -m pytest bench/bench_kernels.py --benchmark-enable -p no:cacheprovider

The timed cases are `fastkd bench`'s own (fastkd/bench/kernels.py: `kd_loss_step`, `ema_step`), at the sizes below.
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

from fastkd.bench.kernels import KD_SOFT_TERMS, ema_step, kd_loss_step
from fastkd.models import create_model

KD_SHAPES = [(128, 100), (128, 200), (256, 1000)]
EMA_MODELS = ["resnet18", "resnet50"]
CPU = torch.device("cpu")


@pytest.mark.parametrize("soft", KD_SOFT_TERMS)
@pytest.mark.parametrize("impl", ["reference", "twin"])
@pytest.mark.parametrize(("batch", "classes"), KD_SHAPES, ids=[f"{b}x{c}" for b, c in KD_SHAPES])
def test_kd_loss_forward_backward(benchmark, batch: int, classes: int, impl: str, soft: str) -> None:
    benchmark.group = f"kd {soft} {batch}x{classes}"
    benchmark(kd_loss_step(batch, classes, soft, CPU, impl))


@pytest.mark.parametrize("impl", ["reference", "twin", "foreach_lerp"])
@pytest.mark.parametrize("model_name", EMA_MODELS)
def test_ema_update(benchmark, model_name: str, impl: str) -> None:
    benchmark.group = f"ema {model_name}"
    benchmark(ema_step(create_model(model_name, num_classes=100), impl))


def test_triton_interpreter_timings(request, bench_note) -> None:
    """Wall time of one interpreted KD-loss forward+backward (128x100) and one EMA update (resnet18)."""
    pytest.importorskip("triton", reason="triton is not installed")
    if not request.config.getoption("benchmark_enable", default=False):
        pytest.skip("interpreter timings are recorded only with --benchmark-enable")
    script = textwrap.dedent(
        """
        import time, torch
        from fastkd.bench.kernels import ema_step, kd_loss_step
        from fastkd.models import create_model
        kd = kd_loss_step(128, 100, "kl", torch.device("cpu"), "triton")
        kd()
        start = time.perf_counter()
        kd()
        kd_seconds = time.perf_counter() - start
        ema = ema_step(create_model("resnet18", num_classes=100), "triton")
        start = time.perf_counter()
        ema()
        print(kd_seconds, time.perf_counter() - start)
        """
    )
    environment = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    kd_seconds, ema_seconds = map(float, result.stdout.split()[-2:])
    bench_note(f"Triton interpreter: kd_loss 128x100 fwd+bwd {kd_seconds:.2f} s, resnet18 EMA update {ema_seconds:.2f} s")
