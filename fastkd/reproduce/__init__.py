"""`fastkd reproduce`: run the papers' experiment grids (experiments x seeds), resumably, on this machine or a Slurm
cluster, and write their tables and plots. The grid is `fastkd.reproduce.experiments`, the table configs/paper/ is
generated from."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..config.methods import get_method
from ..data import train_size
from ..data.fetch import fetch, locate
from ..engine.loggers import without_external_logs
from ..engine.trainer import Trainer
from ..errors import DataError, UsageError
from ..methods import build_method
from .grid import Run, build_grid, needed_data, parse_families, parse_seeds, record_grid
from .report import write_report
from .runner import run_local, slurm_parameters, submit_slurm, visible_gpus


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("family", nargs="?", help="all, or a family (online_kd, self_kd, ema, dropout, vit), comma-separated")
    p.add_argument("--dataset", action="append", help="cifar100 and/or tiny_imagenet (default both)")
    p.add_argument("--arch", action="append", help="resnet18, resnet50, resnet101, or a ViT of the grid, e.g. deit_tiny (default all)")
    p.add_argument("--only", metavar="GLOB", help="keep experiments whose FAMILY/DATASET/ARCH_VARIANT matches")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    p.add_argument("--data-root", help="folder holding the data sets (data.root of every run; default $FASTKD_DATA, "
                                       "else ./data)")
    p.add_argument("--download", action="store_true",
                   help="fetch the data sets the grid needs that are not in the data root before any run starts")
    p.add_argument("--out", default="runs/reproduce", help="grid folder: one run folder per (experiment, seed)")
    p.add_argument("--epochs", type=int, help="train every run this many epochs instead of the scale's")
    p.add_argument("--scale", choices=("full", "smoke"), default="full",
                   help="full: the paper's recipe; smoke: baseline + s=1 per family on the bundled digits, "
                        "ResNet-18 at width/8 (ViT: DeiT-Ti with 1 block of width 32 at 32 px), 2 epochs")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="config overrides for every run (e.g. train.device=cpu)")
    p.add_argument("--dry-run", action="store_true", help="list the runs with their plans and estimated times")
    p.add_argument("--probe-steps", type=int, default=2,
                   help="timed iterations per distinct model set for --dry-run's estimates (0: no estimate)")
    p.add_argument("--launcher", choices=("local", "slurm"), default="local")
    p.add_argument("--gpus-per-run", type=int, default=1, metavar="K",
                   help="train every run data-parallel on K GPUs (a K-process torchrun job locally, K Slurm tasks "
                        "under --launcher slurm); the results equal one process's (data.batch_size stays the "
                        "global batch). Without CUDA: K processes sharing the CPU")
    p.add_argument("--slurm-partition")
    p.add_argument("--slurm-account", help="Slurm account (sbatch --account) the runs are charged to")
    p.add_argument("--slurm-qos", help="Slurm quality of service (sbatch --qos)")
    p.add_argument("--slurm-mem", metavar="MEM", help="memory per node, e.g. 64G (sbatch --mem)")
    p.add_argument("--slurm-cpus-per-task", type=int, default=8, metavar="N",
                   help="CPU cores per task, one task per GPU (sbatch --cpus-per-task; default 8)")
    p.add_argument("--slurm-gres", metavar="GRES", help="generic resources, e.g. gpu:a100:1 (sbatch --gres)")
    p.add_argument("--slurm-timeout-min", type=int, default=24 * 60)
    p.add_argument("--slurm-param", action="append", default=[], metavar="KEY=VALUE", dest="slurm_params",
                   help="any other parameter of submitit's SlurmExecutor (repeatable), e.g. constraint=a100, "
                        "exclusive=true, additional_parameters={reservation: r1}")
    p.add_argument("--report", metavar="DIR", help="only (re)write the report of the grid folder DIR")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def run(args: argparse.Namespace) -> int:
    if args.report:
        print(f"report: {write_report(Path(args.report))}")
        return 0
    if not args.family:
        raise UsageError("fastkd reproduce needs a FAMILY (all, online_kd, self_kd, ema, dropout, vit) or --report DIR")
    if args.gpus_per_run < 1:
        raise UsageError(f"--gpus-per-run {args.gpus_per_run}: expected a whole number >= 1")
    if args.launcher == "local" and args.gpus_per_run > 1:  # Slurm's nodes are not this machine: not checked here
        gpus = len(visible_gpus())
        most = gpus or max(os.cpu_count() or 1, 2)  # without CUDA: gloo processes, one per core (2 even on one)
        if args.gpus_per_run > most:
            here = f"{gpus} visible GPUs" if gpus else f"no GPU and {os.cpu_count()} CPU cores for gloo processes"
            raise UsageError(f"--gpus-per-run {args.gpus_per_run}: this machine has {here}, so a run takes at most "
                             f"{most} processes here (use --launcher slurm for more)")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs {args.epochs}: expected a whole number >= 1")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UsageError(f"--set {bad[0]}: expected KEY=VALUE, e.g. --set train.device=cpu")
    out = Path(args.out)
    runs = build_grid(parse_families(args.family), seeds=parse_seeds(args.seeds), out=out, data_root=args.data_root,
                      scale=args.scale, epochs=args.epochs, datasets=args.dataset, archs=args.arch, only=args.only,
                      extra_overrides=tuple(args.overrides))
    slurm = None
    if args.launcher == "slurm":  # checked before the grid is recorded or anything is submitted
        slurm = slurm_parameters(n_runs=len(runs), gpus_per_run=args.gpus_per_run, timeout_min=args.slurm_timeout_min,
                                 cpus_per_task=args.slurm_cpus_per_task, partition=args.slurm_partition,
                                 account=args.slurm_account, qos=args.slurm_qos, mem=args.slurm_mem,
                                 gres=args.slurm_gres, extra=args.slurm_params)
    needed = needed_data(runs)
    if args.dry_run:
        dry_run(runs, probe_steps=args.probe_steps)
        for problem in missing_data(needed):
            print(f"missing data: {problem}")
        return 0
    if args.download:
        for dataset, root in needed:
            fetch(dataset, root)
    problems = missing_data(needed)
    if problems:  # before anything runs or is submitted: every run would fail on it
        raise DataError("\n".join(f"{problem} (or add --download)" for problem in problems))
    record_grid(out, runs)
    if slurm is not None:
        jobs = submit_slurm(runs, out / "slurm", parameters=slurm, gpus_per_run=args.gpus_per_run)
        print(f"submitted {len(jobs)} runs as Slurm job array {jobs[0].job_id.split('_')[0]}; logs in {out / 'slurm'}; "
              f"when they end: fastkd reproduce --report {out}")
        return 0

    start = time.perf_counter()
    outcomes = run_local(runs, quiet=args.quiet, gpus_per_run=args.gpus_per_run)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("finished", "skipped", "stopped", "failed")}
    print(f"grid of {len(runs)} runs in {time.perf_counter() - start:.0f} s: "
          + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"; report: {write_report(out)}")
    if counts["failed"]:
        print("failed runs (error.txt in each run folder): "
              + ", ".join(o.run_id for o in outcomes if o.status == "failed"))
    return 1 if counts["failed"] else 0


def missing_data(needed: list[tuple[str, str | None]]) -> list[str]:
    """One line per data set of `needed` that is not complete in its data root."""
    presences = [locate(dataset, root) for dataset, root in needed]
    return [presence.problem() for presence in presences if not presence.complete]


# ---------------------------------------------------------------------------------------------------- dry run
_PLAN_SKIP = ("method", "semantics", "notes", "iters_per_epoch", "epochs", "total_epochs", "first_events")


def plan_of(run: Run):
    """The plan `fastkd plan` prints for the run's config (same builder: the method's plan given L)."""
    cfg = run.config()
    full, rest = divmod(train_size(cfg.data.dataset, cfg.data.test_fraction), cfg.data.batch_size)
    iters = full + (1 if rest and not cfg.data.drop_last else 0)  # as the training sampler counts them
    return cfg, build_method(cfg, iters).plan


def dry_run(runs: list[Run], *, probe_steps: int) -> None:
    table = Table(title=f"fastkd reproduce: {len(runs)} runs (dry run)")
    for col in ("run", "method", "L x epochs", "plan", "est. time"):
        table.add_column(col, overflow="fold")
    total, unknown = 0.0, 0
    probes: dict[tuple, float | str] = {}
    for run in runs:
        cfg, plan = plan_of(run)
        fields = {k: v for k, v in plan.as_dict().items() if k not in _PLAN_SKIP}
        seconds = _estimate(cfg, plan, probes, probe_steps)
        if isinstance(seconds, float):
            total += seconds
            shown = _duration(seconds)
        else:
            unknown += 1
            shown = seconds
        table.add_row(run.id, plan.method, f"{plan.iters_per_epoch} x {plan.total_epochs}",
                      ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in fields.items()), shown)
    console = Console(width=200)
    console.print(table)
    if probe_steps < 1:
        console.print(f"{len(runs)} runs (no time estimates: --probe-steps 0)")
        return
    console.print(f"{len(runs)} runs; estimated {_duration(total)} in sequence on this machine"
                  + (f" ({unknown} runs without an estimate)" if unknown else "")
                  + "; estimates: a short probe of the unspaced twin's iterations x L x epochs (evaluation excluded)")


def _estimate(cfg, plan, probes: dict, probe_steps: int) -> float | str:
    if probe_steps < 1:
        return "-"
    method = get_method(cfg.method).unspaced or cfg.method  # same optimizer steps per iteration, from step 1
    key = (method, cfg.model.teacher, cfg.model.student, cfg.model.downsample_factor,
           cfg.model.student_downsample_factor, cfg.data.dataset, cfg.data.batch_size, cfg.dropout.op)
    if key not in probes:
        probes[key] = _probe(cfg.model_copy(update={"method": method}), probe_steps)
    per_iter = probes[key]
    return per_iter * plan.iters_per_epoch * cfg.train.epochs if isinstance(per_iter, float) else per_iter


def _probe(cfg, steps: int) -> float | str:
    """Seconds per iteration of `cfg` over `steps` iterations after one warm-up, in a scratch folder, writing no
    checkpoint."""
    cfg = without_external_logs(cfg)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"checkpoints": False})})
    with tempfile.TemporaryDirectory(prefix="fastkd-probe-") as scratch:
        try:
            trainer = Trainer(cfg, Path(scratch), quiet=True)
        except DataError:
            return "no data (--data-root)"
        trainer.fit(max_steps=1)
        start = time.perf_counter()
        trainer.fit(max_steps=1 + steps)
        return (time.perf_counter() - start) / steps


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
