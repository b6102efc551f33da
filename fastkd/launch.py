"""Which process of a multi-process launch this is, read from the launcher's environment variables (torchrun's
RANK, or Slurm's SLURM_PROCID under `srun`), and an `srun` step's variables turned into torchrun's, so
`srun fastkd train ...` joins one process group without torchrun. Torch-free, so the command line can ask before
importing the engine."""

from __future__ import annotations

import os
import re
from typing import MutableMapping

TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What torchrun gives each worker, and what torch.distributed's env:// rendezvous reads."""


def rank() -> int:
    """This process's rank in its launch (0 for a process started alone)."""
    for key in ("RANK", "SLURM_PROCID"):
        value = os.environ.get(key, "")
        if value.isdigit():
            return int(value)
    return 0


def adopt_srun_step(env: MutableMapping[str, str] = os.environ) -> bool:
    """In a process of a several-task `srun` step that no torchrun started, set torchrun's variables from Slurm's:
    RANK = SLURM_PROCID, WORLD_SIZE = the step's tasks, LOCAL_RANK = SLURM_LOCALID (the GPU index: modulo the
    visible GPUs, as Slurm may bind one GPU per task), MASTER_ADDR (kept if set) = the step's first node, where
    task 0 runs, MASTER_PORT (kept if set) = one derived from the job id, the same in every task. Returns whether
    it did. Only srun sets SLURM_STEP_ID: the batch script itself (SLURM_PROCID 0 of N) stays one process."""
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS", "")
    if "RANK" in env or "SLURM_STEP_ID" not in env or not tasks.isdigit() or int(tasks) < 2:
        return False
    local = int(env.get("SLURM_LOCALID", "0"))
    visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    address = env.get("MASTER_ADDR") or first_host(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
                                                   or env.get("SLURM_NODELIST", ""))
    address = address or env.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1")
    port = env.get("MASTER_PORT") or str(10000 + int(env.get("SLURM_JOB_ID", "0") or 0) % 20000)
    env.update(RANK=env["SLURM_PROCID"], WORLD_SIZE=tasks, LOCAL_RANK=str(local % len(visible) if visible else local),
               MASTER_ADDR=address, MASTER_PORT=port)
    return True


def first_host(nodelist: str) -> str:
    """The first host of a Slurm host list (`gpu[007-009,012],cpu1` -> `gpu007`), or '' for an empty one."""
    match = re.match(r"([^,\[]*)(?:\[([^\]\-,]*))?", nodelist.strip())
    return (match.group(1) + (match.group(2) or "")) if match else ""
