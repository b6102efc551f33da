"""Running a grid: the per-run entry (skip finished, resume interrupted, record failures), the local launcher
(in sequence, or one run per GPU), the Slurm job array (submitit), and the progress display over the grid."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import torch
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..engine import distributed
from ..engine.checkpoint import ensure_writable_folder
from ..engine.trainer import Trainer, join_process_group
from ..errors import FastkdError, RunInterrupted, UsageError
from .grid import Run

Status = Literal["skipped", "finished", "stopped", "failed"]
ERROR_FILE = "error.txt"


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: Status
    """skipped: finished before; finished: trained to the end now; stopped: ended early (train.max_steps) with
    last.pt, resumed by the next invocation; failed: see `message` and the run folder's error.txt."""
    seconds: float
    message: str = ""


def read_summary(run_dir: Path) -> dict | None:
    """summary.json of the run, or None when it has none (or a damaged one: the run then resumes from last.pt)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def run_one(run: Run) -> Outcome:
    """The per-run entry every launcher calls: skip a finished run, resume one with a last.pt exactly as
    `fastkd train CONFIG --resume RUN_DIR` does (same Trainer path), else start it. A failure is written to the
    run folder's error.txt and returned, so the grid goes on; Ctrl-C (RunInterrupted) propagates."""
    run_dir = Path(run.run_dir)
    start = time.perf_counter()
    summary = read_summary(run_dir)
    if summary is not None and summary.get("finished"):
        return Outcome(run.id, "skipped", 0.0)
    try:
        cfg = run.config()
        _check_teacher_ready(cfg)
        join_process_group(cfg)  # a run of several processes (--gpus-per-run K): rank 0 prepares the folder
        resume = (run_dir / "last.pt").is_file()
        distributed.barrier()  # every rank has seen whether last.pt exists before rank 0 may clear the folder
        if distributed.is_main():
            if not resume and run_dir.exists():
                shutil.rmtree(run_dir)  # what a start killed before its first checkpoint left; nothing to continue
            ensure_writable_folder(run_dir)
            (run_dir / ERROR_FILE).unlink(missing_ok=True)
        summary = Trainer(cfg, run_dir, resume=resume, quiet=True).fit()
    except (RunInterrupted, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of one run is recorded and the grid goes on
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = message if isinstance(exc, FastkdError) else traceback.format_exc()
        if distributed.is_main():
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR_FILE).write_text(detail + "\n")
        return Outcome(run.id, "failed", time.perf_counter() - start, message)
    status: Status = "finished" if summary.get("finished") else "stopped"
    return Outcome(run.id, status, time.perf_counter() - start, summary.get("stopped", ""))


def _check_teacher_ready(cfg) -> None:
    """A vit offline run distils from its grid's base run: until that run has a best.pt it waits (recorded as
    failed with this line, and started by the next invocation once the base run is done)."""
    weights = cfg.vit.teacher_weights
    if cfg.method == "vit_offline_kd" and weights and not Path(weights).is_file():
        raise UsageError(f"waiting for the teacher: {weights} does not exist yet; the base run of this arch and seed "
                         "must finish first (run the grid again, or `fastkd reproduce vit --only '*_base'` first)")


def epochs_of(run: Run) -> int:
    return run.config().train.epochs


def epochs_done(run: Run) -> int:
    """Epochs with a metrics.csv row (the progress display's unit)."""
    try:
        with open(Path(run.run_dir) / "metrics.csv") as fh:
            return max(sum(1 for _ in fh) - 1, 0)
    except OSError:
        return 0


class GridProgress:
    """One rich progress bar over the grid in epochs (ETA from the epochs done so far), with run counts, polled
    from the run folders so it also follows runs in child processes."""

    def __init__(self, runs: list[Run], quiet: bool = False):
        self.runs = runs
        self.epochs = {run.id: epochs_of(run) for run in runs}
        self.running: set[str] = set()
        self.counts = {"done": 0, "skipped": 0, "failed": 0, "stopped": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("epochs"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), disable=quiet)
        self.task = self.progress.add_task(self._describe(), total=sum(self.epochs.values()))
        self._poller = threading.Thread(target=self._poll, daemon=True)

    def _describe(self) -> str:
        c = self.counts
        return (f"grid: {c['done']} done, {len(self.running)} running, {c['failed']} failed, {c['skipped']} skipped"
                + (f", {c['stopped']} stopped" if c["stopped"] else "") + f" of {len(self.runs)} runs")

    def __enter__(self) -> GridProgress:
        self.progress.start()
        done_before = sum(min(epochs_done(run), self.epochs[run.id]) for run in self.runs)
        self.progress.reset(self.task, total=sum(self.epochs.values()), completed=done_before)
        self._poller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._poller.join()
        self._refresh()
        self.progress.stop()

    def started(self, run: Run) -> None:
        with self._lock:
            self.running.add(run.id)
        self._refresh()

    def ended(self, run: Run, outcome: Outcome) -> None:
        with self._lock:
            self.running.discard(run.id)
            key = {"finished": "done"}.get(outcome.status, outcome.status)
            self.counts[key] += 1
        line = f"{outcome.status:8s} {run.id}" + (f" ({outcome.seconds:.0f} s)" if outcome.seconds else "")
        if outcome.message:
            line += f": {outcome.message}"
        self.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)  # one line at any width
        self._refresh()

    def _refresh(self) -> None:
        with self._lock:
            done = sum(min(epochs_done(run), self.epochs[run.id]) for run in self.runs)
            self.progress.update(self.task, completed=done, description=self._describe())

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            self._refresh()


def run_local(runs: list[Run], *, quiet: bool = False, gpus_per_run: int = 1) -> list[Outcome]:
    """In sequence in this process; with several CUDA devices visible, one run per device in child processes;
    with `gpus_per_run` K > 1, every run is a K-process torchrun job on its own K GPUs (on a machine without
    CUDA: K gloo processes sharing the CPU cores, one run at a time)."""
    gpus = visible_gpus()
    if gpus_per_run > 1:
        if gpus and gpus_per_run > len(gpus):
            raise UsageError(f"--gpus-per-run {gpus_per_run}: only {len(gpus)} GPU(s) are visible; use at most "
                             f"{len(gpus)}")
        slots = ([{"CUDA_VISIBLE_DEVICES": ",".join(gpus[i:i + gpus_per_run])}
                  for i in range(0, len(gpus) - gpus_per_run + 1, gpus_per_run)] if gpus
                 else [{"OMP_NUM_THREADS": str(distributed.cpu_threads_per_process(gpus_per_run))}])
        return run_in_children(runs, slots, quiet=quiet, processes_per_run=gpus_per_run)
    if len(gpus) > 1:
        return run_in_children(runs, [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus], quiet=quiet)
    outcomes = []
    with GridProgress(runs, quiet) as progress:
        for run in runs:
            progress.started(run)
            outcome = run_one(run)
            progress.ended(run, outcome)
            outcomes.append(outcome)
    return outcomes


def visible_gpus() -> list[str]:
    """The CUDA device indices this process sees (none without CUDA)."""
    if not torch.cuda.is_available():
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def run_in_children(runs: list[Run], slots: list[dict[str, str]], *, quiet: bool = False,
                    processes_per_run: int = 1) -> list[Outcome]:
    """Up to len(slots) runs at a time, each in a child process (`python -m fastkd.reproduce.worker`, or a
    `torchrun --standalone` job of `processes_per_run` such processes) with its slot's environment
    (CUDA_VISIBLE_DEVICES); each child calls `run_one` and (rank 0) writes its outcome as JSON."""
    launcher = [sys.executable] if processes_per_run == 1 else distributed.standalone_launch(processes_per_run)
    pending = list(runs)
    active: dict[int, tuple[subprocess.Popen, Run, Path]] = {}
    outcomes: dict[str, Outcome] = {}
    with GridProgress(runs, quiet) as progress:
        while pending or active:
            for slot in range(len(slots)):
                if slot not in active and pending:
                    run = pending.pop(0)
                    Path(run.run_dir).parent.mkdir(parents=True, exist_ok=True)
                    result = Path(run.run_dir + ".outcome.json")
                    result.unlink(missing_ok=True)
                    spec = Path(run.run_dir + ".run.json")
                    spec.write_text(json.dumps(asdict(run)))
                    child = subprocess.Popen([*launcher, "-m", "fastkd.reproduce.worker", str(spec), str(result)],
                                             env={**os.environ, **slots[slot]}, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL if processes_per_run > 1 else None)
                    active[slot] = (child, run, result)
                    progress.started(run)
            for slot, (child, run, result) in list(active.items()):
                if child.poll() is None:
                    continue
                del active[slot]
                try:
                    outcome = Outcome(**json.loads(result.read_text()))
                except (OSError, ValueError, TypeError):
                    outcome = Outcome(run.id, "failed", 0.0, f"worker exited with status {child.returncode}")
                outcomes[run.id] = outcome
                progress.ended(run, outcome)
            time.sleep(0.2)
    return [outcomes[run.id] for run in runs]


def run_one_distributed(run: Run) -> Outcome:
    """The entry of each of a run's K Slurm tasks (--gpus-per-run K > 1): torch.distributed's environment (rank,
    world size, master address and port) from submitit's job environment, then `run_one` in that process group."""
    from submitit.helpers import TorchDistributedEnvironment


    TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    try:
        return run_one(run)
    finally:
        distributed.teardown()


SLURM_FLAG_PARAMETERS = {"partition": "--slurm-partition", "account": "--slurm-account", "qos": "--slurm-qos",
                         "mem": "--slurm-mem", "cpus_per_task": "--slurm-cpus-per-task", "gres": "--slurm-gres",
                         "time": "--slurm-timeout-min"}
"""submitit SlurmExecutor parameters that have their own `fastkd reproduce` flag (not taken by --slurm-param)."""

SLURM_DERIVED_PARAMETERS = {"gpus_per_node": "--gpus-per-run", "ntasks_per_node": "--gpus-per-run",
                            "array_parallelism": "the number of runs"}
"""submitit SlurmExecutor parameters fastkd sets from the grid itself (not taken by --slurm-param)."""


def slurm_parameters(*, n_runs: int, gpus_per_run: int = 1, timeout_min: int = 24 * 60, cpus_per_task: int = 8,
                     partition: str | None = None, account: str | None = None, qos: str | None = None,
                     mem: str | None = None, gres: str | None = None, extra: Iterable[str] = ()) -> dict[str, Any]:
    """The submitit SlurmExecutor parameters of a grid's job array: one task per GPU of a run, the flags' values,
    and `extra` (`KEY=VALUE` strings, the value read as YAML: `exclusive=true`, `nodes=2`) checked against
    submitit's parameter names, so a typo is one line here rather than an sbatch error after the grid is recorded."""
    if timeout_min < 1:
        raise UsageError(f"--slurm-timeout-min {timeout_min}: expected a whole number of minutes >= 1")
    if cpus_per_task < 1:
        raise UsageError(f"--slurm-cpus-per-task {cpus_per_task}: expected a whole number >= 1")
    if mem is not None and not re.fullmatch(r"[0-9]+[KMGT]?", mem, flags=re.IGNORECASE):
        raise UsageError(f"--slurm-mem {mem}: expected Slurm's memory per node, a whole number with an optional "
                         "unit K, M, G or T (e.g. 64G; no unit: megabytes)")
    parameters: dict[str, Any] = {"gpus_per_node": gpus_per_run, "ntasks_per_node": gpus_per_run,
                                  "cpus_per_task": cpus_per_task, "time": timeout_min, "array_parallelism": n_runs}
    flags = {"partition": partition, "account": account, "qos": qos, "mem": mem, "gres": gres}
    parameters.update({key: value for key, value in flags.items() if value is not None})
    for item in extra:
        key, value = _slurm_param(item)
        parameters[key] = value
    return parameters


def _slurm_param(item: str) -> tuple[str, Any]:
    """One `--slurm-param KEY=VALUE` as (submitit parameter, value), or a one-line UsageError."""
    key, sep, text = item.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise UsageError(f"--slurm-param {item}: expected KEY=VALUE, e.g. --slurm-param constraint=a100")
    if key in SLURM_FLAG_PARAMETERS:
        raise UsageError(f"--slurm-param {item}: {key} has its own flag, {SLURM_FLAG_PARAMETERS[key]}")
    if key in SLURM_DERIVED_PARAMETERS:
        raise UsageError(f"--slurm-param {item}: fastkd sets {key} from {SLURM_DERIVED_PARAMETERS[key]}")
    known = sorted(_submitit_slurm_parameters() - SLURM_FLAG_PARAMETERS.keys() - SLURM_DERIVED_PARAMETERS.keys())
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]}?" if close else "one of " + ", ".join(known)
        raise UsageError(f"--slurm-param {item}: submitit's SlurmExecutor has no parameter {key}; {hint}")
    try:
        return key, yaml.safe_load(text)
    except yaml.YAMLError:
        raise UsageError(f"--slurm-param {item}: the value is not a YAML scalar, list or mapping") from None


def _submitit_slurm_parameters() -> set[str]:
    try:
        from submitit.slurm.slurm import SlurmExecutor
    except ImportError:
        raise UsageError("--launcher slurm needs submitit: pip install 'fastkd[slurm]'") from None
    return set(SlurmExecutor._valid_parameters())


def submit_slurm(runs: list[Run], folder: Path, *, executor=None, parameters: dict[str, Any] | None = None,
                 gpus_per_run: int = 1):
    """Submit the runs as one Slurm job array through submitit, each task calling `run_one` (with K > 1 GPUs per
    run: K tasks per run, one per GPU, calling `run_one_distributed`); returns the jobs. `parameters` are the
    SlurmExecutor's (`slurm_parameters`; default: its defaults for `gpus_per_run`). `executor` replaces the
    Slurm one (tests pass submitit's LocalExecutor with tasks_per_node=K: the same pickled entry, local
    processes)."""
    try:
        import submitit
    except ImportError:
        raise UsageError("--launcher slurm needs submitit: pip install 'fastkd[slurm]'") from None
    if executor is None:
        if shutil.which("sbatch") is None:
            raise UsageError("--launcher slurm: no Slurm here (sbatch not found on PATH); submit from a cluster "
                             "login node, or use --launcher local")
        executor = submitit.SlurmExecutor(folder=folder)
        executor.update_parameters(**(parameters or slurm_parameters(n_runs=len(runs), gpus_per_run=gpus_per_run)))
    return executor.map_array(run_one if gpus_per_run == 1 else run_one_distributed, runs)
