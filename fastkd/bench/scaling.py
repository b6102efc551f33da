"""`fastkd bench --nproc 1,2,...`: data-parallel scaling of fastkd's own runs under `torchrun`.

For every world size N the preset's run of each method (same global batch, so the same L and the same training
arithmetic) trains warm-up + `rounds` epochs in one `torchrun --standalone --nproc_per_node=N` job. An epoch's time
runs from a barrier before it to a barrier after it (the slowest rank). Reported: global images/s, images/s per
process, and the scaling efficiency (images/s at N) / (N x images/s at 1). On CPU the N processes share the machine:
each gets cpu_count // N threads, so every world size uses the same cores; on CUDA each process drives its own GPU
(LOCAL_RANK), so N may not exceed the visible GPUs. The reference side is not run: its spaced KD cannot train
data-parallel (docs/semantics.md), so the question here is only how fastkd scales.

This module is also the per-job entry: `python -m fastkd.bench.scaling METHOD PRESET ROUNDS DATA_ROOT WORKDIR OUT`
(started by torchrun; rank 0 writes the epoch times to OUT as JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..engine import distributed
from ..engine.trainer import Trainer
from .fastkd_side import FastkdRounds, fastkd_config
from .measure import sync_device
from .presets import BENCH_METHODS, PRESETS, BenchMethod, BenchOptionError, Preset
from .report import machine_line

SYNC_BN_CHOICES = ("auto", "on", "off")


def parse_nproc(text: str, device: str) -> list[int]:
    """`--nproc` as sorted world sizes, 1 always included (the baseline of the efficiency)."""
    try:
        sizes = {int(part) for part in text.split(",")}  # an empty part (`1,,2`) is refused, as --seeds does
    except ValueError:
        raise BenchOptionError(f"--nproc {text!r}: give comma-separated process counts such as 1,2,4") from None
    if min(sizes) < 1:
        raise BenchOptionError(f"--nproc {text!r}: process counts must be >= 1, e.g. 1,2,4")
    if device == "cuda" and torch.cuda.is_available() and max(sizes) > torch.cuda.device_count():
        raise BenchOptionError(f"--nproc {text!r}: {max(sizes)} processes need as many GPUs and "
                               f"{torch.cuda.device_count()} are visible; use at most that many")
    cores = os.cpu_count() or 1
    if device != "cuda" and max(sizes) > max(cores, 2):  # gloo processes share the cores: one each (2 even on one)
        raise BenchOptionError(f"--nproc {text!r}: {max(sizes)} CPU processes on a machine with {cores} cores; use "
                               f"at most {max(cores, 2)}")
    return sorted(sizes | {1})


def threads_per_process(nproc: int, device: str) -> int:
    """CPU: the machine's cores split evenly between the processes; CUDA: torch's default."""
    return torch.get_num_threads() if device == "cuda" else distributed.cpu_threads_per_process(nproc)


def bench_scaling(method: BenchMethod, preset: Preset, rounds: int, nprocs: list[int], workdir: Path,
                  data_root: Path, sync_bn: str = "auto") -> dict[str, Any]:
    """One row: the method's epoch times at every world size, each from its own torchrun job."""
    scale = preset.scales[method.name]
    per_size: dict[str, Any] = {}
    for nproc in nprocs:
        out = workdir / f"scaling-{method.name}-{nproc}.json"
        threads = threads_per_process(nproc, preset.device)
        command = [*distributed.standalone_launch(nproc), "-m", "fastkd.bench.scaling", method.name, preset.name, str(rounds), str(data_root),
                   str(workdir / f"scaling-runs-{nproc}"), str(out), f"--sync-bn={sync_bn}"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        job = subprocess.run(command, capture_output=True, text=True, env=env)
        if job.returncode != 0 or not out.exists():
            last = [line for line in job.stderr.splitlines() if line.strip()][-1:] or ["no output"]
            raise RuntimeError(f"the {nproc}-process job exited {job.returncode}: {last[0]}")
        measured = json.loads(out.read_text())
        images_per_s = [scale.train_images / s for s in measured["epoch_seconds"]]
        per_size[str(nproc)] = {"threads_per_process": threads, "images_per_s": images_per_s,
                                "global_batch_norm": measured["global_batch_norm"],
                                "median_images_per_s": statistics.median(images_per_s)}
    base = per_size["1"]["median_images_per_s"]
    for nproc, entry in per_size.items():
        entry["per_process_images_per_s"] = entry["median_images_per_s"] / int(nproc)
        entry["speedup"] = entry["median_images_per_s"] / base
        entry["efficiency"] = entry["speedup"] / int(nproc)
    return {"method": method.name, "status": "ok", "setting": method.setting, "batch_size": scale.batch_size,
            "iters_per_epoch": scale.iters_per_epoch, "train_images": scale.train_images, "nproc": per_size}


def scaling_markdown(results: dict[str, Any]) -> str:
    p = results["preset"]
    lines = [
        f"# fastkd bench --nproc — preset `{p['name']}`, {results['date']}",
        "",
        machine_line(results["machine"]) + " Threads per process: the table's column.",
        "",
        f"Each world size N trains the same run (same global batch) for {p['warmup_rounds']} warm-up + "
        f"{results['rounds']} timed epoch(s) in one `torchrun --standalone --nproc_per_node=N` job, "
        f"`train.sync_bn={results['sync_bn']}`; medians of the timed epochs. Speed-up = images/s at N / images/s "
        "at 1; efficiency = speed-up / N."
        + (" On this CPU the N processes share the same cores (threads per process = cores / N): the ideal is a "
           "speed-up of 1 (efficiency 1/N), and what falls short of it is the cost of data parallelism, not a "
           "multi-device speed." if p["device"] == "cpu" else ""),
        "",
        "| method | setting | batch × L | processes | threads each | img/s | img/s per process | speed-up vs 1 "
        "| efficiency |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["scaling"]:
        if row["status"] != "ok":
            lines.append(f"| {row['method']} | {row['status']}: {row['reason']} |  |  |  |  |  |  |  |")
            continue
        for nproc, e in row["nproc"].items():
            lines.append(f"| {row['method']} | {row['setting']} | {row['batch_size']} × {row['iters_per_epoch']} "
                         f"| {nproc} | {e['threads_per_process']} | {e['median_images_per_s']:.1f} "
                         f"| {e['per_process_images_per_s']:.1f} | {e['speedup']:.2f}× "
                         f"| **{100 * e['efficiency']:.0f}%** |")
    return "\n".join(lines) + "\n"


def _time_epochs(method_name: str, preset_name: str, rounds: int, data_root: Path, workdir: Path,
                 sync_bn: str) -> tuple[list[float], bool]:
    """Inside the torchrun job: warm-up, then `rounds` epochs timed between barriers; also whether batch norm
    used global-batch statistics."""
    method, preset = BENCH_METHODS[method_name], PRESETS[preset_name]
    scale = preset.scales[method_name]
    cfg = fastkd_config(method, scale, preset.device, data_root, workdir, preset.warmup_rounds + rounds,
                        [f"train.sync_bn={sync_bn}"])
    trainer = Trainer(cfg, workdir / method_name, quiet=True)
    rounds_driver = FastkdRounds(trainer, scale.iters_per_epoch)
    device = trainer.runtime.device
    for _ in range(preset.warmup_rounds):
        rounds_driver.train_epoch()
    seconds = []
    for _ in range(rounds):
        sync_device(device)
        distributed.barrier()
        start = time.perf_counter()
        rounds_driver.train_epoch()
        sync_device(device)
        distributed.barrier()
        seconds.append(time.perf_counter() - start)
    return seconds, trainer.runtime.sync_bn


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m fastkd.bench.scaling", description=__doc__.splitlines()[0])
    for name in ("method", "preset"):
        parser.add_argument(name)
    parser.add_argument("rounds", type=int)
    for name in ("data_root", "workdir", "out"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--sync-bn", default="auto", choices=SYNC_BN_CHOICES)
    args = parser.parse_args(argv)
    try:
        seconds, global_bn = _time_epochs(args.method, args.preset, args.rounds, args.data_root, args.workdir,
                                          args.sync_bn)
        if distributed.is_main():
            args.out.write_text(json.dumps({"nproc": distributed.world_size(), "epoch_seconds": seconds,
                                            "global_batch_norm": global_bn}))
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
