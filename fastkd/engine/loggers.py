"""Where a run's numbers go: metrics.csv, steps.jsonl, TensorBoard and wandb, behind one interface.

The Trainer logs through one `RunLog`: a row per epoch, and per-step losses read to the host in chunks (never per
step). Every sink gets the same rows; only rank 0 has sinks. The optional packages (tensorboard, wandb) are imported
here and nowhere else.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..config import ExperimentConfig, LogConfig, WandbConfig
from ..errors import CheckpointError, ConfigError, first_line
from . import distributed
from .metrics import StepLog

Row = dict[str, Any]

WANDB_RUN_ID_FILE = "wandb-run-id"
"""In the run folder: the id of the run's wandb run, so `--resume` continues that same wandb run."""
STEP_PREFIX = "steps/"
"""wandb key of a steps.jsonl loss: `steps/<kind>_<loss name>` (teacher and student losses stay apart)."""


class Sink:
    """One destination of a run's rows. A `fit` opens every sink, logs, then closes them; a resumed run first
    tells each sink where its checkpoint stands. Every method does nothing unless a sink needs it."""

    def resume(self, epochs_done: int, global_step: int, logged: list[Row]) -> None:
        """The run continues from a checkpoint after `epochs_done` epochs and `global_step` steps, whose history
        holds the `logged` epoch rows: forget what was logged after it."""

    def open(self, config: Row) -> None:
        """Start a `fit` (`config`: the resolved experiment config)."""

    def log_epoch(self, row: Row) -> None:
        """One metrics.csv row."""

    def log_steps(self, rows: list[Row]) -> None:
        """steps.jsonl rows (`step`, `kind`, `lr` and the losses), oldest first."""

    def close(self, failed: bool) -> None:
        """End a `fit`; `failed`: it ended with an error."""


class CsvSink(Sink):
    """One row per epoch in `metrics.csv`; the header is fixed by the first row ever written (timm's summary.csv)."""

    def __init__(self, path: Path):
        self.path = path

    def log_epoch(self, row: Row) -> None:
        rows: list[dict] = []
        columns = list(row)
        if self.path.exists():
            with open(self.path, newline="") as fh:
                reader = csv.DictReader(fh)
                rows = list(reader)
                columns = list(reader.fieldnames or []) + [k for k in row if k not in (reader.fieldnames or [])]
        if rows and len(columns) > len(rows[0]):
            # A later epoch reports a new column (e.g. offline KD's student phase): rewrite with the wider header.
            self._rewrite(columns, rows)
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})

    def resume(self, epochs_done: int, global_step: int, logged: list[Row]) -> None:
        """Write metrics.csv anew from the checkpoint's own rows: each epoch appears once, and a file that a crash
        or an edit cut or emptied is rebuilt, not appended to."""
        if not logged:
            self.path.unlink(missing_ok=True)
            return
        columns = list(dict.fromkeys(key for row in logged for key in row))  # as log_epoch widens the header
        self._rewrite(columns, [{k: _csv_value(row.get(k)) for k in columns} for row in logged])

    def _rewrite(self, columns: list[str], rows: list[dict]) -> None:
        tmp = _temp_name(self.path)
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)


class StepsJsonlSink(Sink):
    """Every step's losses in `steps.jsonl`, one JSON object per line (train.log_every_step)."""

    def __init__(self, path: Path):
        self.path = path

    def log_steps(self, rows: list[Row]) -> None:
        with open(self.path, "a") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in rows)

    def resume(self, epochs_done: int, global_step: int, logged: list[Row]) -> None:
        """Drop rows after `global_step` (written by a run that went on past its checkpoint before it stopped),
        and a last line a crash cut short; a damaged line before it is refused."""
        if not self.path.exists():
            return
        lines = [line for line in self.path.read_text(errors="replace").splitlines(keepends=True) if line.strip()]
        kept = []
        for number, line in enumerate(lines, 1):
            try:
                step = json.loads(line)["step"]
            except (ValueError, TypeError, KeyError):
                if number == len(lines) and not line.endswith("\n"):
                    break  # the row being written when the run was killed: it follows the checkpoint
                raise CheckpointError(f"{self.path}: line {number} is not a steps.jsonl row ({line.strip()[:40]!r}); "
                                      "delete the damaged lines (or the file) to resume") from None
            if step <= global_step:
                kept.append(line)
        if len(kept) != len(lines):
            tmp = _temp_name(self.path)
            tmp.write_text("".join(kept))
            os.replace(tmp, self.path)


class TensorBoardSink(Sink):
    """The numeric values of every metrics.csv row as TensorBoard scalars at step `epoch` (in `tb/`)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._purge_step: int | None = None
        self._writer = None

    def resume(self, epochs_done: int, global_step: int, logged: list[Row]) -> None:
        self._purge_step = epochs_done + 1  # TensorBoard hides the events a stopped run wrote past its checkpoint

    def open(self, config: Row) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.folder), purge_step=self._purge_step)
        self._purge_step = None

    def log_epoch(self, row: Row) -> None:
        for key, value in row.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self._writer.add_scalar(key, value, row["epoch"])

    def close(self, failed: bool) -> None:
        self._writer.close()


class WandbSink(Sink):
    """A wandb run that gets what metrics.csv and steps.jsonl get: every epoch row (same keys, x-axis `epoch`)
    and every steps.jsonl loss as `steps/<kind>_<name>` (x-axis `step`). Its id is kept in the run folder, so a
    resumed fastkd run (or a later `fit`) continues the same wandb run."""

    def __init__(self, settings: WandbConfig, run_dir: Path, run_name: str, quiet: bool):
        self.settings = settings
        self.run_dir = run_dir
        self.run_name = run_name
        self.quiet = quiet
        self._run_id: str | None = None
        self._run = None
        self._epoch_keys: set[str] = set()

    def resume(self, epochs_done: int, global_step: int, logged: list[Row]) -> None:
        path = self.run_dir / WANDB_RUN_ID_FILE
        self._run_id = (path.read_text().strip() or None) if path.is_file() else None

    def open(self, config: Row) -> None:
        import wandb

        s = self.settings
        try:
            self._run = wandb.init(
                # mode and folder read here, not left to wandb: it reads its environment once per process.
                project=s.project, entity=s.entity, name=s.name or self.run_name, mode=_wandb_mode(s),
                dir=os.environ.get("WANDB_DIR") or str(self.run_dir),
                id=self._run_id, resume="allow" if self._run_id else None,
                # console off: the progress bar and fastkd's lines stay on the terminal as they are.
                settings=wandb.Settings(console="off", silent=self.quiet))
        except (wandb.errors.Error, OSError) as exc:
            raise ConfigError(f"log.wandb: wandb could not start the run ({first_line(exc)}); log in (`wandb "
                              "login` or WANDB_API_KEY), or log without a network: log.wandb.mode=offline, then "
                              "`wandb sync` the run folder's wandb/ folder") from None
        self._run.config.update(config, allow_val_change=True)
        self._run_id = self._run.id
        (self.run_dir / WANDB_RUN_ID_FILE).write_text(self._run.id + "\n")
        self._run.define_metric("epoch")
        self._run.define_metric("step")
        self._run.define_metric(STEP_PREFIX + "*", step_metric="step")
        self._epoch_keys.clear()

    def log_epoch(self, row: Row) -> None:
        values = {key: value for key, value in row.items() if value is not None}
        for key in values:
            if key != "epoch" and key not in self._epoch_keys:
                self._run.define_metric(key, step_metric="epoch")
                self._epoch_keys.add(key)
        self._run.log(values)

    def log_steps(self, rows: list[Row]) -> None:
        for row in rows:
            losses = {f"{STEP_PREFIX}{row['kind']}_{name}": value for name, value in row.items()
                      if name not in ("step", "kind", "lr")}
            self._run.log({"step": row["step"], f"{STEP_PREFIX}lr": row["lr"], **losses})

    def close(self, failed: bool) -> None:
        self._run.finish(exit_code=1 if failed else 0)
        self._run = None


class RunLog:
    """All a Trainer logs through: per-step losses stay on the device until `flush_steps` (one host read for
    all of them), epoch rows go out at once; every sink gets the same rows."""

    def __init__(self, sinks: list[Sink], steps: StepLog | None):
        self.sinks = sinks
        self.steps = steps
        """The device-side step buffer (None: train.log_every_step is off). Kept on every rank: its read is a
        collective under torchrun."""

    def add_step(self, step: int, kind: str, lr: float, losses: dict[str, torch.Tensor]) -> None:
        if self.steps is not None:
            self.steps.add(step, kind, lr, losses)

    def flush_steps(self) -> None:
        """Read the pending step losses to the host (every rank takes part) and hand them to the sinks."""
        rows = self.steps.read() if self.steps is not None else []
        if rows:
            for sink in self.sinks:
                sink.log_steps(rows)

    def log_epoch(self, row: Row) -> None:
        for sink in self.sinks:
            sink.log_epoch(row)

    def open(self, config: Row) -> None:
        for sink in self.sinks:
            sink.open(config)

    def close(self, failed: bool) -> None:
        for sink in self.sinks:
            sink.close(failed)


# ------------------------------------------------------------------------------------------- building
PIP_EXTRAS = {"tensorboard": "pip install 'fastkd[tensorboard]'", "wandb": "pip install 'fastkd[wandb]'"}


def check_log_packages(cfg: ExperimentConfig) -> tuple[bool, bool]:
    """(TensorBoard on, wandb on) for `cfg`. A sink asked for explicitly (train.tensorboard: true, a
    log.wandb.project) whose package is missing stops the run now, in one line with the pip command."""
    tensorboard = cfg.train.tensorboard
    if tensorboard == "auto":
        tensorboard = _importable("torch.utils.tensorboard")
    elif tensorboard and not _importable("torch.utils.tensorboard"):
        raise ConfigError(f"train.tensorboard: true, but tensorboard is not installed: {PIP_EXTRAS['tensorboard']} "
                          "(or set train.tensorboard=auto to log to TensorBoard only where it is installed)")
    wandb = cfg.log.wandb.project is not None and _wandb_mode(cfg.log.wandb) != "disabled"
    if wandb and not _importable("wandb"):
        raise ConfigError(f"log.wandb.project: {cfg.log.wandb.project!r}, but wandb is not installed: "
                          f"{PIP_EXTRAS['wandb']} (or set log.wandb.mode=disabled)")
    return tensorboard, wandb


def build_run_log(cfg: ExperimentConfig, run_dir: Path, *, resumed_at: tuple[int, int, list[Row]] | None,
                  quiet: bool) -> RunLog:
    """The RunLog of a run in `run_dir`: metrics.csv and steps.jsonl always, TensorBoard and wandb as `cfg`
    says (rank 0 only). `resumed_at` = (epochs done, global step, epoch rows) of the checkpoint a resumed run
    continues."""
    steps = StepLog() if cfg.train.log_every_step else None
    tensorboard, wandb = check_log_packages(cfg)
    if not distributed.is_main():
        return RunLog([], steps)
    sinks: list[Sink] = [CsvSink(run_dir / "metrics.csv"), StepsJsonlSink(run_dir / "steps.jsonl")]
    if tensorboard:
        sinks.append(TensorBoardSink(run_dir / "tb"))
    if wandb:
        sinks.append(WandbSink(cfg.log.wandb, run_dir, cfg.name, quiet))
    if resumed_at is not None:
        for sink in sinks:
            sink.resume(*resumed_at)
    return RunLog(sinks, steps)


def without_external_logs(cfg: ExperimentConfig) -> ExperimentConfig:
    """A copy of `cfg` that logs to neither TensorBoard nor wandb, for trainers whose numbers are no run's own
    (`fastkd eval`, the time probes of `fastkd reproduce --dry-run`)."""
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"tensorboard": False}), "log": LogConfig()})


def _wandb_mode(settings: WandbConfig) -> str:
    """log.wandb.mode, else wandb's own WANDB_MODE switch (read at each run start), else online."""
    return settings.mode or os.environ.get("WANDB_MODE") or "online"


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _temp_name(path: Path) -> Path:
    """The temp file a rewrite of `path` goes through (removed at the start of a run if a kill left it)."""
    return path.with_name(f".{path.name}.tmp")


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
