"""A torchrun worker for the distributed tests: trains the runs given as JSON (each a config file and its
key=value overrides) one after the other in one process group, so several equivalence runs pay the start-up once. With
`--fail-rank R --fail-step S`, rank R raises at iteration S (a rank that dies mid-run); with `--nan-step S` the last
row of the global batch at iteration S is NaN (a non-finite loss on one rank only); with `--kill-step S` every rank
exits abruptly at iteration S (the job killed)."""

import argparse
import json
import os
import sys
from pathlib import Path

from fastkd.cli import main
from fastkd.runs import train_and_report
from fastkd.config import load_config
from fastkd.engine import distributed
from fastkd.engine.trainer import Trainer
from fastkd.kernels import global_batch


def inject_failure(rank: int, step: int) -> None:
    """Make `rank` raise when the trainer reaches iteration `step`."""
    original = Trainer.batch

    def batch(self, indices, seed):
        if distributed.rank() == rank and self.global_step + 1 == step:
            raise RuntimeError(f"injected failure at step {step}")
        return original(self, indices, seed)

    Trainer.batch = batch


def inject_kill(step: int) -> None:
    """End every rank abruptly (no cleanup, no save: as `kill -9` of the job) when it reaches iteration `step`."""
    original = Trainer.batch

    def batch(self, indices, seed):
        if self.global_step + 1 == step:
            os._exit(137)
        return original(self, indices, seed)

    Trainer.batch = batch


def inject_nan_pixel(step: int) -> None:
    """Make the last row of the global batch at iteration `step` NaN: it lies on the last rank, so only that rank's
    share of the loss is non-finite (the same row in a single-process run)."""
    original = Trainer.batch

    def batch(self, indices, seed):
        x, y = original(self, indices, seed)
        rows = global_batch.batch_rows()
        if self.global_step + 1 == step and (rows is None or rows[0].stop == rows[1]):
            x = x.clone()
            x[-1] = float("nan")
        return x, y

    Trainer.batch = batch


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path, help="JSON file: a list of runs, each a list of `fastkd train` arguments")
    parser.add_argument("--fail-rank", type=int)
    parser.add_argument("--fail-step", type=int)
    parser.add_argument("--nan-step", type=int)
    parser.add_argument("--kill-step", type=int)
    args = parser.parse_args()
    if args.kill_step is not None:
        inject_kill(args.kill_step)
    if args.fail_rank is not None:
        inject_failure(args.fail_rank, args.fail_step)
    if args.nan_step is not None:
        inject_nan_pixel(args.nan_step)
    runs = json.loads(args.runs.read_text())
    if len(runs) == 1:  # the whole command line path, error handling included
        sys.exit(main(["train", *runs[0]]))
    for run in runs:  # one process group for all (torch cannot re-create one in the same process)
        cfg = load_config(run[0], run[1:])
        train_and_report(cfg, Path(cfg.output_dir) / cfg.name, resume=False, quiet=True, label="fastkd")
    distributed.teardown()
