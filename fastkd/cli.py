"""`fastkd train | eval | plan | demo`: the command line. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from .config import ConfigError, ExperimentConfig, apply_overrides, load_config, validate
from .data import DataError, train_size
from .engine.checkpoint import CheckpointError

USER_ERRORS = (ConfigError, DataError, CheckpointError)


class UsageError(ValueError):
    """A bad command-line argument combination."""


def _split_overrides(values: list[str]) -> tuple[str | None, list[str]]:
    """The optional CONFIG path is the first positional that is not key=value."""
    config = None
    overrides = []
    for value in values:
        if "=" in value or config is not None:
            overrides.append(value)
        else:
            config = value
    return config, overrides


def _run_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.output_dir) / cfg.name


# ------------------------------------------------------------------------------------------------ train
def cmd_train(args: argparse.Namespace) -> int:
    config_path, overrides = _split_overrides(args.config)
    if args.resume:
        resume_dir = Path(args.resume)
        if config_path is None:
            config_path = str(resume_dir / "config.yaml")
            if not Path(config_path).is_file():
                raise UsageError(f"--resume {resume_dir}: no config.yaml there; pass the run folder of a fastkd run")
        cfg = load_config(config_path, overrides)
        run_dir = resume_dir
        if not (run_dir / "last.pt").is_file():
            raise UsageError(f"--resume {run_dir}: no last.pt checkpoint there; start without --resume")
    else:
        if config_path is None:
            raise UsageError("fastkd train needs a CONFIG file (see configs/), e.g. fastkd train configs/demo.yaml")
        cfg = load_config(config_path, overrides)
        run_dir = _run_dir(cfg)
        if (run_dir / "last.pt").exists():
            raise UsageError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
                             "or pick another name=... / output_dir=...")
    return train_and_report(cfg, run_dir, resume=bool(args.resume), quiet=args.quiet, label="fastkd")


def train_and_report(cfg: ExperimentConfig, run_dir: Path, *, resume: bool, quiet: bool, label: str) -> int:
    """Build the trainer, say what runs where, train, print the results table."""
    from .engine.trainer import Trainer

    trainer = Trainer(cfg, run_dir, resume=resume, quiet=quiet)
    if not quiet:
        print(f"{label} -> {cfg.method} ({cfg.semantics}) on {cfg.data.dataset}: {trainer.runtime.describe()}; "
              f"L={trainer.plan.iters_per_epoch} -> {run_dir}", flush=True)
    summary = trainer.fit()
    if not quiet:
        print_summary([(cfg.name, summary)])
    return 0


def print_summary(rows: list[tuple[str, dict]]) -> None:
    """Best and final test top-1 of every evaluated output (teacher, student, EMA, exits...) of each run."""
    from rich.console import Console
    from rich.table import Table

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


# ------------------------------------------------------------------------------------------------- plan
def build_plan(cfg: ExperimentConfig):
    from .methods import build_method

    n = train_size(cfg.data.dataset, cfg.data.test_fraction)
    return build_method(cfg, -(-n // cfg.data.batch_size)).plan


def cmd_plan(args: argparse.Namespace) -> int:
    config_path, overrides = _split_overrides(args.config)
    cfg = load_config(config_path, overrides)
    plan = build_plan(cfg)
    print_plan(plan, as_json=args.json)
    return 0


def print_plan(plan, as_json: bool) -> None:
    """Every field of any method's plan (labels from the field names), then its notes."""
    if as_json:
        print(json.dumps(plan.as_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"fastkd plan: {plan.method} ({plan.semantics})", show_header=False)
    for key, value in plan.as_dict().items():
        if key in ("method", "semantics", "notes"):
            continue
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        table.add_row(key.replace("_", " "), shown)
    for note in plan.notes:
        table.add_row("note", note)
    Console().print(table)


# ------------------------------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    import tempfile

    from .engine.checkpoint import load_checkpoint
    from .engine.trainer import Trainer

    payload = load_checkpoint(args.checkpoint)
    if "learners" not in payload or "config" not in payload:
        raise CheckpointError(f"{args.checkpoint}: not a fastkd run checkpoint (no learners/config)")
    cfg = validate(apply_overrides(payload["config"], args.overrides), f"{args.checkpoint} config")
    with tempfile.TemporaryDirectory(prefix="fastkd-eval-") as scratch:
        trainer = Trainer(cfg, Path(scratch), quiet=True)
        trainer.load_weights(payload, args.checkpoint)
        results = trainer.evaluate()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key}: {value:.4f}")
    return 0


# ------------------------------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), epochs=args.epochs, quiet=args.quiet)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    return bench.run(args)


def cmd_compat(args: argparse.Namespace) -> int:
    from . import compat

    return compat.run(args.script, args.argv)


def demo_config_path() -> Path:
    return Path(str(resources.files("fastkd.configs") / "demo.yaml"))


# ------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastkd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train from a YAML config with key=value overrides")
    p.add_argument("config", nargs="*", metavar="CONFIG [key=value ...]")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("plan", help="print what a config will do (iterations, replays) without training")
    p.add_argument("config", nargs="+", metavar="CONFIG [key=value ...]")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("eval", help="evaluate a checkpoint on its data set's test split")
    p.add_argument("checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.root=/data")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="Spaced online KD vs online KD on the bundled digits data (CPU, < 3 min)")
    p.add_argument("--out", default="runs/demo", help="folder for both runs, the table and the plot")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epoch count")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="fastkd vs the reference code's hot-path structure, in one run")
    from . import bench

    bench.add_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("compat", help="run a reference script's command line unchanged (drop-in backend)",
                       description="fastkd compat SCRIPT [reference flags...]: SCRIPT is train_space (= train_kd), "
                                   "self_kd, ema or dropout; add --print-config or --plan [--json] to inspect.")
    p.add_argument("script", help="train_space | train_kd | self_kd | ema | dropout")
    p.add_argument("argv", nargs=argparse.REMAINDER, help="the reference script's flags, spelled as it spells them")
    p.set_defaults(func=cmd_compat)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS + (UsageError,) as exc:
        print(f"fastkd: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # validation raised by a builder (unknown model, bad device, ...)
        if exc.__traceback__ is not None and _raised_by_fastkd(exc):
            print(f"fastkd: error: {exc}", file=sys.stderr)
            return 2
        raise


def _raised_by_fastkd(exc: BaseException) -> bool:
    """Only ValueErrors raised in fastkd's own code are user errors; anything else is a bug to show in full."""
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return "/fastkd/" in tb.tb_frame.f_code.co_filename or "/pipelines/" in tb.tb_frame.f_code.co_filename


if __name__ == "__main__":
    sys.exit(main())
