"""torchrun + gloo on CPU, 2 processes: a run equals the 1-process run with the same global batch (every logged
loss, the evaluations and the final weights to 1e-10 in float64, with global batch-norm statistics), resumes
bit-exactly after a stop and refuses another world size, runs over two "nodes" on 127.0.0.1, and a rank that
raises ends the job with one line from rank 0."""

import csv
import json
import math
import os
import random
import runpy
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from datasets_on_disk import write_cifar100
from fastkd.cli import main
from fastkd.config import load_config
from fastkd.engine.trainer import Trainer

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TOLERANCE = 1e-10

# 37 training samples in batches of 8: L = 5, the last batch (5 rows) splits 3 + 2 over the ranks; 11 test samples
# in batches of 3: the last one splits 1 + 1, the others 2 + 1.
COMMON = ["seed=5", "data.dataset=cifar100", "data.batch_size=8", "data.eval_batch_size=3", "data.pipeline=torch",
          "model.student_downsample_factor=64", "train.epochs=2", "train.device=cpu", "train.float64=true",
          "train.deterministic=true", "train.sync_bn=on", "train.log_every_step=true", "train.progress=false",
          "train.tensorboard=false"]
METHODS = {  # >= 2 replay/KD/EMA intervals (I = int(0.4 * 5) = 2) in 10 iterations
    "spaced_online_kd": ["method=spaced_online_kd", "model.downsample_factor=64", "kd.interval=0.4"],
    "spaced_self_kd": ["method=spaced_self_kd", "kd.interval=0.4"],
    "spaced_ema": ["method=spaced_ema", "ema.interval=0.4", "ema.decay=0.5"],
    "spaced_dropout": ["method=spaced_dropout", "dropout.op=standard", "dropout.space=0.8",
                       "dropout.cutout_input=true"],
    "spaced_max_dropout": ["method=spaced_dropout", "dropout.op=max", "dropout.space=0.8"],
    # 2 replays (S = ceil(5 * 1.0) = 5 teacher steps); drop path > 0, drawn for the global batch and sliced
    "vit_spaced_kd": ["method=vit_spaced_kd", "semantics=standard", "model.student=deit_tiny", "data.image_size=32",
                      "vit.model_args={depth: 2, embed_dim: 32, num_heads: 2}", "vit.drop_path_rate=0.3",
                      "vit.interval=1.0"],
    # the pycls behaviour: one AdamW shared by teacher and student, replays from an independent loader stream
    "vit_spaced_kd_reference": ["method=vit_spaced_kd", "semantics=reference", "model.student=deit_tiny",
                                "data.image_size=32", "vit.model_args={depth: 2, embed_dim: 32, num_heads: 2}",
                                "vit.drop_path_rate=0.3", "vit.interval=1.0"],
}


def run_args(root: Path, out: Path, name: str, method: str) -> list[str]:
    return [f"name={name}", f"output_dir={out}", f"data.root={root}", *COMMON, *METHODS[method]]


def torchrun(args: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    return subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=HERE.parent.parent, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def steps(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]


def evaluations(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name.startswith("eval_") or name.startswith("train_")]
    return [float(row.split(",")[i]) for row in lines[1:] for i in keep]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "last.pt", weights_only=True)
    out = {f"{name}.{key}": value for name, learner in state["learners"].items()
           for key, value in learner["model"].items() if value.is_floating_point()}
    ema = state["method"].get("ema")
    if isinstance(ema, dict):
        out.update({f"ema.{key}": value for key, value in ema.items()
                    if isinstance(value, torch.Tensor) and value.is_floating_point()})
    return out


def max_differences(a: Path, b: Path) -> tuple[float, float]:
    """(largest difference of any logged loss, of any final weight or buffer) between two runs."""
    rows_a, rows_b = steps(a), steps(b)
    assert [(r["step"], r["kind"]) for r in rows_a] == [(r["step"], r["kind"]) for r in rows_b]
    loss = max(abs(x[k] - y[k]) for x, y in zip(rows_a, rows_b) for k in x if k not in ("step", "kind"))
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    weight = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    return loss, weight


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every method trained once by 1 process (in this process) and once by 2 (one torchrun job)."""
    tmp = tmp_path_factory.mktemp("ddp")
    root = write_cifar100(tmp / "data", n_train=37, n_test=11)
    out = tmp / "runs"
    for method in METHODS:
        Trainer(load_config(None, run_args(root, out, f"{method}-1", method)), out / f"{method}-1", quiet=True).fit()
    jobs = tmp / "jobs.json"
    jobs.write_text(json.dumps([[str(HERE / "online_kd.yaml"), *run_args(root, out, f"{method}-2", method)]
                                for method in METHODS]))
    result = torchrun(["--standalone", "--nproc_per_node=2", str(HERE / "worker.py"), str(jobs)])
    assert result.returncode == 0, result.stderr[-3000:]
    return root, out


@pytest.mark.parametrize("method", list(METHODS))
def test_two_processes_equal_one(runs, method):
    _, out = runs
    loss, weight = max_differences(out / f"{method}-1", out / f"{method}-2")
    print(f"{method}: max loss difference {loss:.3g}, max weight difference {weight:.3g}")
    assert loss < TOLERANCE and weight < TOLERANCE
    assert evaluations(out / f"{method}-1") == pytest.approx(evaluations(out / f"{method}-2"), abs=1e-5)


def test_resume_is_bit_exact_and_needs_the_same_world_size(runs, capsys):
    root, out = runs
    args = run_args(root, out, "resumed", "spaced_online_kd")
    config = HERE / "online_kd.yaml"
    stop = 7  # mid-epoch 2, between replay events, with a batch in the replay log
    first = torchrun(["--standalone", "--nproc_per_node=2", "-m", "fastkd", "train", str(config), *args,
                      f"train.max_steps={stop}", "--quiet"])
    assert first.returncode == 0, first.stderr[-3000:]
    assert torch.load(out / "resumed" / "last.pt", weights_only=True)["global_step"] == stop

    assert main(["train", "--resume", str(out / "resumed"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "trained by 2 process(es) and this job has 1" in error

    second = torchrun(["--standalone", "--nproc_per_node=2", "-m", "fastkd", "train", str(config), *args,
                       "--resume", str(out / "resumed"), "--quiet"])
    assert second.returncode == 0, second.stderr[-3000:]
    assert steps(out / "resumed") == steps(out / "spaced_online_kd-2")
    resumed, uninterrupted = weights(out / "resumed"), weights(out / "spaced_online_kd-2")
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def test_nonfinite_skip_is_decided_alike_on_every_rank(runs, tmp_path, monkeypatch):
    """`train.nonfinite: skip` with a NaN sample that only the last rank holds: both ranks skip the same steps, and
    the run equals the single-process one (same skipped steps, losses and weights)."""
    root, out = runs
    nan_step = 3  # epoch 1, logged for the replay of epoch 1 too: the student skips it again there
    args = [*run_args(root, out, "skip-1", "spaced_online_kd"), "train.nonfinite=skip"]
    args_2 = [*run_args(root, out, "skip-2", "spaced_online_kd"), "train.nonfinite=skip", "--quiet"]
    worker = runpy.run_path(str(HERE / "worker.py"))
    monkeypatch.setattr(Trainer, "batch", Trainer.batch)  # restored after the test
    worker["inject_nan_pixel"](nan_step)
    Trainer(load_config(None, args), out / "skip-1", quiet=True).fit()
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([[str(HERE / "online_kd.yaml"), *args_2]]))
    result = torchrun(["--standalone", "--nproc_per_node=2", str(HERE / "worker.py"), str(jobs),
                       f"--nan-step={nan_step}"])
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = steps(out / "skip-1"), steps(out / "skip-2")
    assert [(r["step"], r["kind"]) for r in one] == [(r["step"], r["kind"]) for r in two]
    nonfinite = [(r["step"], r["kind"]) for r in one if not math.isfinite(r["loss"])]
    assert nonfinite and nonfinite == [(r["step"], r["kind"]) for r in two if not math.isfinite(r["loss"])]
    assert all(math.isnan(b) if math.isnan(a) else abs(a - b) < TOLERANCE
               for x, y in zip(one, two) for k in x if k not in ("step", "kind") for a, b in [(x[k], y[k])])
    skipped = [[row["nonfinite_skipped_steps"] for row in csv.DictReader(open(out / run / "metrics.csv"))]
               for run in ("skip-1", "skip-2")]
    assert skipped[0] == skipped[1] and int(skipped[0][0]) > 0
    wa, wb = weights(out / "skip-1"), weights(out / "skip-2")
    assert all(bool(wa[k].isfinite().all()) for k in wa)
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < TOLERANCE


def test_a_killed_job_resumes_bit_exactly(runs, tmp_path):
    """Both ranks die without warning at an arbitrary step of epoch 2 (nothing saved since the epoch-1 checkpoint);
    `--resume` under torchrun continues from that checkpoint and ends exactly as the uninterrupted job."""
    root, out = runs
    kill_step = random.Random(12).randint(6, 9)  # epoch 2 (L = 5), past its first replay or before it
    args = [*run_args(root, out, "killed", "spaced_online_kd"), "--quiet"]
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([[str(HERE / "online_kd.yaml"), *args]]))
    killed = torchrun(["--standalone", "--nproc_per_node=2", str(HERE / "worker.py"), str(jobs),
                       f"--kill-step={kill_step}"])
    assert killed.returncode != 0
    assert torch.load(out / "killed" / "last.pt", weights_only=True)["global_step"] == 5
    resumed = torchrun(["--standalone", "--nproc_per_node=2", "-m", "fastkd", "train", str(HERE / "online_kd.yaml"),
                        *args, "--resume", str(out / "killed")])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert steps(out / "killed") == steps(out / "spaced_online_kd-2")
    after, uninterrupted = weights(out / "killed"), weights(out / "spaced_online_kd-2")
    assert all(torch.equal(after[k], uninterrupted[k]) for k in uninterrupted)


def test_two_nodes_on_localhost(runs):
    root, out = runs
    port = free_port()
    args = run_args(root, out, "two-nodes", "spaced_online_kd")
    nodes = [subprocess.Popen([*TORCHRUN, "--nnodes=2", f"--node_rank={rank}", "--nproc_per_node=1",
                               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=fastkd-test",
                               "-m", "fastkd", "train", str(HERE / "online_kd.yaml"), *args, "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE.parent.parent,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
             for rank in (0, 1)]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]
    loss, weight = max_differences(out / "spaced_online_kd-1", out / "two-nodes")
    assert loss < TOLERANCE and weight < TOLERANCE


def test_a_failing_rank_ends_the_job_with_one_line(runs, tmp_path):
    root, out = runs
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([[str(HERE / "online_kd.yaml"), *run_args(root, out, "failing", "spaced_online_kd"),
                                 "train.dist_timeout=60", "--quiet"]]))
    start = time.monotonic()
    result = torchrun(["--standalone", "--nproc_per_node=2", str(HERE / "worker.py"), str(jobs), "--fail-rank=1",
                       "--fail-step=3"], timeout=120)
    assert result.returncode != 0
    assert time.monotonic() - start < 60
    lines = [line for line in result.stderr.splitlines() if line.startswith("fastkd: error:")]
    assert lines == ["fastkd: error: rank 1 failed: RuntimeError: injected failure at step 3"], result.stderr[-3000:]
