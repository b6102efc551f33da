"""Triton kernels on a machine without a GPU: interpreter runs against the oracles, and a compile to PTX.

Both run in fresh processes, so TRITON_INTERPRET is set (or absent) before triton is first imported, whatever
the rest of the test session imported.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed: the Triton kernels cannot be tested"
)
CASES_FILE = Path(__file__).with_name("triton_interpreter_cases.py")


def _run(command: list[str], *, interpret: bool, timeout: int) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    if interpret:
        environment["TRITON_INTERPRET"] = "1"
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).parents[2])


def test_triton_kernels_match_the_oracles_under_the_interpreter() -> None:
    """Runs every case of triton_interpreter_cases.py (KD loss with poisoned outputs, EMA) with TRITON_INTERPRET=1."""
    result = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES_FILE)],
                  interpret=True, timeout=1200)
    assert result.returncode == 0, f"interpreter cases failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


def test_kernels_compile_for_a_cuda_target() -> None:
    """Compile both kernels to PTX (no GPU needed) without the interpreter: catches constructs the interpreter
    accepts but the compiler rejects."""
    script = textwrap.dedent(
        """
        import triton
        import triton.language as tl
        from triton.backends.compiler import GPUTarget
        from fastkd.kernels._kd_triton import _kd_loss_kernel
        from fastkd.kernels._ema_triton import _ema_lerp_kernel
        target = GPUTarget("cuda", 80, 32)
        kd_signature = dict(
            student_ptr="*bf16", teacher_ptr="*fp16", labels_ptr="*i64", grad_ptr="*bf16", ce_ptr="*fp32",
            soft_ptr="*fp32", batch="i32", classes="i32", stride_student_head="i64", stride_student_row="i32",
            stride_student_col="i32", stride_teacher_row="i32", stride_teacher_col="i32", stride_labels="i32",
            inv_t="fp32", temperature="fp32", ce_grad_scale="fp32", soft_grad_scale="fp32",
            label_smoothing="fp32", SOFT="constexpr", BLOCK_C="constexpr", ACC="constexpr",
        )
        for soft in range(4):
            source = triton.compiler.ASTSource(_kd_loss_kernel, kd_signature, {"SOFT": soft, "BLOCK_C": 4096, "ACC": tl.float32})
            assert triton.compile(source, target=target, options={"num_warps": 16}).asm["ptx"]
        for flat, weight in (("*bf16", "*fp32"), ("*fp64", "*fp64")):
            ema_signature = dict(average_ptr=flat, source_ptr=flat, weight_ptr=weight, numel="i64", BLOCK="constexpr")
            source = triton.compiler.ASTSource(_ema_lerp_kernel, ema_signature, {"BLOCK": 4096})
            assert triton.compile(source, target=target, options={"num_warps": 8}).asm["ptx"]
        """
    )
    result = _run([sys.executable, "-c", script], interpret=False, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
