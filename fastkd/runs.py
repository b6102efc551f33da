"""What the commands do once their arguments are parsed: train and report a run, build and print a plan.

`fastkd.cli` only parses and dispatches; `fastkd compat`, `fastkd demo` and `fastkd reproduce` call these too.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .config import ExperimentConfig
from .data import train_size
from .engine.trainer import Trainer
from .methods import build_method


def train_and_report(cfg: ExperimentConfig, run_dir: Path, *, resume: bool, quiet: bool, label: str) -> int:
    """Build the trainer, say what runs where, train, print the results table."""
    trainer = Trainer(cfg, run_dir, resume=resume, quiet=quiet)
    quiet = trainer.quiet  # every rank but rank 0 is quiet under torchrun
    if not quiet:
        print(f"{label} -> {cfg.method} ({cfg.semantics}) on {cfg.data.dataset}: {trainer.runtime.describe()}; "
              f"L={trainer.plan.iters_per_epoch} -> {run_dir}", flush=True)
    summary = trainer.fit()
    if not quiet:
        print_summary([(cfg.name, summary)])
    return 0


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
    return Path(str(resources.files("fastkd.configs") / "demo.yaml"))
