"""tests/cuda: the CUDA paths (compiled Triton kernels, DALI on the GPU, compiled bf16 engine steps). Every test here
is marked `cuda` and, without a CUDA device, skipped with one reason that says where they do run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
# The float64 oracles and shared checks of the CPU suites (kd_oracles, kernel_checks, pipeline_oracle).
for helpers in (HERE.parent / "kernels", HERE.parent / "pipelines"):
    if str(helpers) not in sys.path:
        sys.path.insert(0, str(helpers))

NO_CUDA_REASON = ("no CUDA device visible (torch.cuda.is_available() is False); these tests run on a GPU through "
                  "bench/gpu_check.sh")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason=NO_CUDA_REASON)
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.cuda)
            if skip is not None:
                item.add_marker(skip)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Print a failure the moment it happens: the GPU check runs these tests under a time limit, and pytest's own
    report (and the JUnit XML) come only at the end, so a step that runs out of time would lose every failure."""
    if report.failed:
        print(f"\n=== FAILED {report.nodeid} ({report.when}) ===\n{report.longreprtext[-6000:]}\n=== end of failure",
              file=sys.__stderr__, flush=True)
