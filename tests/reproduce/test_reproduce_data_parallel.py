"""`fastkd reproduce --gpus-per-run K`: each run is one data-parallel job of K processes (here K = 2 gloo processes
on the CPU, the path K GPUs take with NCCL) through the local launcher (torchrun) and through the Slurm path
(submitit, K tasks per run; its LocalExecutor here), and equals the same run trained by one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fastkd.cli import main
from fastkd.reproduce.grid import build_grid
from fastkd.reproduce.runner import run_one, submit_slurm

pytestmark = pytest.mark.slow

EXACT = ["model.student_downsample_factor=1024", "data.batch_size=128", "train.device=cpu", "train.float64=true",
         "train.deterministic=true", "train.sync_bn=on"]
"""Dropout ResNet-18 at width/32, float64 with global batch-norm statistics: 2 processes equal 1 process to
~1e-11 in the weights; the largest difference, ~7e-10 on a running variance of ~6, is float64 rounding of the
all-reduced sums the global variance is formed from."""
TOLERANCE = 1e-9
ONLY = "*_spaced_s1.0"


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "last.pt", weights_only=True)
    return {f"{name}.{key}": value for name, learner in state["learners"].items()
            for key, value in learner["model"].items() if value.is_floating_point()}


def _max_difference(a: Path, b: Path) -> float:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The grid run trained by one process."""
    out = tmp_path_factory.mktemp("single")
    [run] = build_grid(("dropout",), seeds=(0,), out=out, data_root=None, scale="smoke", epochs=1, only=ONLY,
                       extra_overrides=tuple(EXACT))
    assert run_one(run).status == "finished"
    return Path(run.run_dir)


def test_local_launcher_trains_each_run_as_one_torchrun_job(single, tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["reproduce", "dropout", "--scale", "smoke", "--epochs", "1", "--only", ONLY, "--out", str(out),
            "--gpus-per-run", "2", "--quiet", "--set", *EXACT]
    assert main(argv) == 0
    run_dir = out / "dropout/digits/resnet18_spaced_s1.0-seed0"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["finished"]
    assert torch.load(run_dir / "last.pt", weights_only=True)["world_size"] == 2
    assert _max_difference(single, run_dir) < TOLERANCE
    assert "1 finished" in capsys.readouterr().out
    assert main(argv) == 0 and "1 skipped" in capsys.readouterr().out  # finished: not trained again


def test_slurm_path_gives_each_run_k_tasks(single, tmp_path):
    submitit = pytest.importorskip("submitit")
    [run] = build_grid(("dropout",), seeds=(0,), out=tmp_path, data_root=None, scale="smoke", epochs=1, only=ONLY,
                       extra_overrides=tuple(EXACT))
    executor = submitit.LocalExecutor(folder=tmp_path / "slurm")
    executor.update_parameters(timeout_min=10, tasks_per_node=2)
    [job] = submit_slurm([run], tmp_path / "slurm", executor=executor, gpus_per_run=2)
    outcomes = job.results()
    assert len(outcomes) == 2 and all(o.status == "finished" for o in outcomes)
    assert _max_difference(single, Path(run.run_dir)) < TOLERANCE
