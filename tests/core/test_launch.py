"""`srun fastkd train ...` without torchrun: an srun step's SLURM_* variables read as torchrun's (rank, world size,
local rank, master address and port), and two faked srun tasks joining one gloo process group through them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from fastkd.launch import adopt_srun_step, first_host

STEP = {"SLURM_STEP_ID": "0", "SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
        "SLURM_JOB_NODELIST": "gpu[007-008]", "SLURM_STEP_NODELIST": "gpu[007-008]", "SLURM_JOB_ID": "123456",
        "SLURM_LAUNCH_NODE_IPADDR": "10.0.0.9"}


def test_an_srun_task_gets_torchruns_variables():
    env = dict(STEP)
    assert adopt_srun_step(env)
    assert {k: env[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")} == {
        "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu007", "MASTER_PORT": "13456"}


@pytest.mark.parametrize("change,expected", [
    ({"MASTER_ADDR": "head", "MASTER_PORT": "29500"}, {"MASTER_ADDR": "head", "MASTER_PORT": "29500"}),
    ({"SLURM_STEP_NODELIST": "", "SLURM_JOB_NODELIST": ""}, {"MASTER_ADDR": "10.0.0.9"}),
    ({"SLURM_STEP_NUM_TASKS": "2"}, {"WORLD_SIZE": "2"}),
    ({"CUDA_VISIBLE_DEVICES": "3"}, {"LOCAL_RANK": "0"}),  # Slurm bound one GPU to the task: it is device 0
])
def test_set_values_and_fallbacks(change, expected):
    env = {**STEP, **change}
    assert adopt_srun_step(env)
    assert {k: env[k] for k in expected} == expected


@pytest.mark.parametrize("change", [
    {"RANK": "5"},  # torchrun (inside srun) already set the rank: its variables stand
    {"SLURM_STEP_ID": None},  # the batch script itself, not an srun step
    {"SLURM_NTASKS": "1"},  # a one-task step is one process
])
def test_left_alone(change):
    env = {k: v for k, v in {**STEP, **change}.items() if v is not None}
    before = dict(env)
    assert not adopt_srun_step(env) and env == before


@pytest.mark.parametrize("nodelist,host", [("gpu[007-009,012],cpu1", "gpu007"), ("node1,node2", "node1"),
                                           ("a-b[3]", "a-b3"), ("", "")])
def test_first_host(nodelist, host):
    assert first_host(nodelist) == host


def test_two_srun_tasks_join_one_process_group():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = ("from fastkd.engine import distributed as d; d.setup(False, 60); "
              "print(d.rank(), d.world_size(), d.is_active()); d.teardown()")
    tasks = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={k: v for k, v in {
                                  **os.environ, "OMP_NUM_THREADS": "1", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2",
                                  "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
                                  "SLURM_STEP_NODELIST": "localhost", "MASTER_PORT": str(port)}.items()
                                  if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")})
             for rank in (0, 1)]
    printed = []
    for task in tasks:
        out, err = task.communicate(timeout=120)
        assert task.returncode == 0, err[-2000:]
        printed.append(out.strip())
    assert printed == ["0 2 True", "1 2 True"]
