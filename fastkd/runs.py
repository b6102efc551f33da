"""What the commands do once their arguments are parsed: train and report a run, build and print a plan.

`fastkd.cli` only parses and dispatches; `fastkd compat`, `fastkd demo` and `fastkd reproduce` call these too.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from . import configs
from .config import ExperimentConfig, apply_overrides, load_config, validate
from .data import train_size
from .engine.checkpoint import ensure_writable_folder, load_checkpoint
from .engine.loggers import without_external_logs
from .engine.trainer import Trainer
from .errors import CheckpointError, UsageError
from .methods import build_method


def prepare_run(config_path: str | None, overrides: list[str], *, resume: str | Path | None = None
                ) -> tuple[ExperimentConfig, Path]:
    """The validated config and the run folder of `fastkd train` / `fastkd.train`: a new run must not overwrite
    one (its folder holds no last.pt); `resume` names a run folder holding last.pt (its config.yaml when
    `config_path` is None; a new run's None means every default). Overrides that would change a resumed run are
    refused later, against its checkpoint."""
    if resume:
        run_dir = Path(resume)
        if run_dir.is_file():
            raise UsageError(f"--resume {run_dir}: is a file; --resume takes the run folder, e.g. "
                             f"--resume {run_dir.parent}")
        if not run_dir.is_dir():
            raise UsageError(f"--resume {run_dir}: no such run folder; pass the folder of a fastkd run "
                             "(output_dir/name)")
        if not (run_dir / "last.pt").is_file():
            raise UsageError(f"--resume {run_dir}: no last.pt checkpoint there, so nothing to continue; "
                             "start the run without --resume")
        if config_path is None:
            config_path = str(run_dir / "config.yaml")
            if not Path(config_path).is_file():
                raise UsageError(f"--resume {run_dir}: no config.yaml there; pass the run's config file too: "
                                 f"fastkd train CONFIG --resume {run_dir}")
        cfg = load_config(config_path, overrides)
    else:
        cfg = load_config(config_path, overrides)
        return cfg, new_run_folder(cfg)
    ensure_writable_folder(run_dir)
    return cfg, run_dir


def new_run_folder(cfg: ExperimentConfig) -> Path:
    """output_dir/name, refused when it already holds a run (a new run never overwrites one), made writable."""
    run_dir = Path(cfg.output_dir) / cfg.name
    if (run_dir / "last.pt").exists():
        raise UsageError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
                         "or pick another name=... / output_dir=...")
    ensure_writable_folder(run_dir)
    return run_dir


def train_run(cfg: ExperimentConfig, run_dir: Path, *, resume: bool, quiet: bool, label: str) -> dict[str, Any]:
    """Build the trainer, say what runs where, train, print the results table; returns the run's summary
    (the contents of summary.json)."""
    trainer = Trainer(cfg, run_dir, resume=resume, quiet=quiet)
    quiet = trainer.quiet  # every rank but rank 0 is quiet under torchrun
    if not quiet:
        print(f"{label} -> {cfg.method} ({cfg.semantics}) on {cfg.data.dataset}: {trainer.runtime.describe()}; "
              f"L={trainer.plan.iters_per_epoch} -> {run_dir}", flush=True)
    summary = trainer.fit()
    if not quiet:
        print_summary([(cfg.name, summary)])
    return summary


def train_and_report(cfg: ExperimentConfig, run_dir: Path, *, resume: bool, quiet: bool, label: str) -> int:
    """`train_run` for a command: its exit status."""
    train_run(cfg, run_dir, resume=resume, quiet=quiet, label=label)
    return 0


@dataclass(frozen=True)
class Evaluation:
    """What `fastkd eval` / `fastkd.evaluate` report about a checkpoint."""

    results: dict[str, float]
    """eval_<output>_top1 (fractions in [0, 1]) and the other test metrics, in the run's evaluation order."""
    epochs_done: int
    main_model: str
    """The model whose best test top-1 picks best.pt (the method's main model)."""


def evaluate_checkpoint(checkpoint: str | Path, overrides: list[str] = ()) -> Evaluation:
    """Score a fastkd run checkpoint (last.pt or best.pt) on its data set's test split, as the run evaluates."""
    payload = load_checkpoint(checkpoint)
    if not isinstance(payload.get("learners"), dict) or not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{checkpoint}: not a fastkd run checkpoint (no learners/config); fastkd eval "
                              "takes the last.pt or best.pt of a fastkd run (reference weights load with init_from=)")
    cfg = validate(apply_overrides(payload["config"], list(overrides)), f"{checkpoint} config", list(overrides))
    cfg = without_external_logs(cfg)  # scoring a checkpoint is not a run: no TensorBoard or wandb
    epochs_done = int(payload.get("epoch", 0))
    with tempfile.TemporaryDirectory(prefix="fastkd-eval-") as scratch:
        trainer = Trainer(cfg, Path(scratch), quiet=True)
        trainer.load_weights(payload, str(checkpoint))
        results = trainer.evaluate(epochs_trained=epochs_done)
    return Evaluation(results, epochs_done, trainer.method.main_model(max(epochs_done - 1, 0)))


def print_summary(rows: list[tuple[str, dict]]) -> None:
    """Best and final test top-1 of every evaluated output (teacher, student, EMA, exits...) of each run."""
    table = Table(title="fastkd results: test top-1 accuracy")
    for col in ("run", "model", "best", "final", "epochs"):
        table.add_column(col)
    for name, s in rows:
        outputs = [k.removesuffix("_best_top1") for k in s if k.endswith("_best_top1")]
        for i, output in enumerate(outputs):
            table.add_row(name if i == 0 else "", output, _pct(s.get(f"{output}_best_top1")),
                          _pct(s.get(f"{output}_final_top1")), str(s["epochs_done"]) if i == 0 else "")
    console = Console()
    console.print(table)
    for name, s in rows:
        console.print(f"{name}: {s['run_dir']}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def build_plan(cfg: ExperimentConfig):
    n = train_size(cfg.data.dataset, cfg.data.test_fraction)
    batches = n // cfg.data.batch_size if cfg.data.drop_last else -(-n // cfg.data.batch_size)
    return build_method(cfg, batches).plan


def print_plan(plan, as_json: bool) -> None:
    """Every field of any method's plan (labels from the field names), then its notes."""
    if as_json:
        print(json.dumps(plan.as_dict(), indent=2))
        return

    table = Table(title=f"fastkd plan: {plan.method} ({plan.semantics})", show_header=False)
    for key, value in plan.as_dict().items():
        if key in ("method", "semantics", "notes"):
            continue
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        table.add_row(key.replace("_", " "), shown)
    for note in plan.notes:
        table.add_row("note", note)
    Console().print(table)


def demo_config_path() -> Path:
    return configs.folder() / "demo.yaml"
