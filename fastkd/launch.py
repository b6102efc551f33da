"""Which process of a multi-process launch this is, read from the launcher's environment variables (torchrun's
RANK, or Slurm's SLURM_PROCID under `srun`). Torch-free, so the command line can ask before importing the engine."""

from __future__ import annotations

import os


def rank() -> int:
    """This process's rank in its launch (0 for a process started alone)."""
    for key in ("RANK", "SLURM_PROCID"):
        value = os.environ.get(key, "")
        if value.isdigit():
            return int(value)
    return 0
