"""`fastkd train | eval | plan | demo`: the command line. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import command as config_command
from .config import ExperimentConfig, apply_overrides, load_config, split_config_and_overrides, validate
from .data.readers import DATASET_FOLDERS
from .engine import distributed
from .engine.checkpoint import ensure_writable_folder
from .runs import build_plan, print_plan, train_and_report
from .errors import ArgumentParser, CheckpointError, FastkdError, RunInterrupted, UsageError


def _run_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.output_dir) / cfg.name


# ------------------------------------------------------------------------------------------------ train
def cmd_train(args: argparse.Namespace) -> int:
    config_path, overrides = split_config_and_overrides(args.config)
    if args.resume:
        run_dir = Path(args.resume)
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
        # Overrides that would change the run are refused against the checkpoint's own config (Trainer).
        cfg = load_config(config_path, overrides)
    else:
        if config_path is None:
            raise UsageError("fastkd train needs a CONFIG file (see configs/), e.g. fastkd train configs/demo.yaml")
        cfg = load_config(config_path, overrides)
        run_dir = _run_dir(cfg)
        if (run_dir / "last.pt").exists():
            raise UsageError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
                             "or pick another name=... / output_dir=...")
    ensure_writable_folder(run_dir)
    return train_and_report(cfg, run_dir, resume=bool(args.resume), quiet=args.quiet, label="fastkd")


# ------------------------------------------------------------------------------------------------- plan
def cmd_plan(args: argparse.Namespace) -> int:
    config_path, overrides = split_config_and_overrides(args.config)
    cfg = load_config(config_path, overrides)
    plan = build_plan(cfg)
    print_plan(plan, as_json=args.json)
    return 0


# ------------------------------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    import tempfile

    from .engine.checkpoint import load_checkpoint
    from .engine.loggers import without_external_logs
    from .engine.trainer import Trainer

    payload = load_checkpoint(args.checkpoint)
    if not isinstance(payload.get("learners"), dict) or not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{args.checkpoint}: not a fastkd run checkpoint (no learners/config); fastkd eval "
                              "takes the last.pt or best.pt of a fastkd run (reference weights load with init_from=)")
    cfg = validate(apply_overrides(payload["config"], args.overrides), f"{args.checkpoint} config", args.overrides)
    cfg = without_external_logs(cfg)  # scoring a checkpoint is not a run: no TensorBoard or wandb
    with tempfile.TemporaryDirectory(prefix="fastkd-eval-") as scratch:
        trainer = Trainer(cfg, Path(scratch), quiet=True)
        trainer.load_weights(payload, args.checkpoint)
        results = trainer.evaluate(epochs_trained=int(payload.get("epoch", 0)))  # the run's evaluation order
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    epochs_done = int(payload.get("epoch", 0))
    main_model = trainer.method.main_model(max(epochs_done - 1, 0))
    print(f"{args.checkpoint}: weights after epoch {epochs_done}. Checkpoint policy: best.pt is last.pt as of the "
          f"epoch with the best test top-1 of '{main_model}' (the method's main model); every other model is "
          "scored as of that same epoch, not at its own best.")
    for key, value in results.items():
        print(f"{key}: {value:.4f}")
    return 0


# ------------------------------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), epochs=args.epochs, quiet=args.quiet)
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from .data.fetch import fetch

    for dataset in dict.fromkeys(args.datasets):
        folder, fetched = fetch(dataset, args.root)
        print(f"{dataset}: {'fetched into' if fetched else 'already present in'} {folder}", flush=True)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    return bench.run(args)


def cmd_compat(args: argparse.Namespace) -> int:
    from .reference import compat

    return compat.run(args.script, args.argv)


# ------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="fastkd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train from a YAML config with key=value overrides")
    p.add_argument("config", nargs="*", metavar="CONFIG [key=value ...]")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=cmd_train, positional_list="config")

    p = sub.add_parser("plan", help="print what a config will do (iterations, replays) without training")
    p.add_argument("config", nargs="+", metavar="CONFIG [key=value ...]")
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.set_defaults(func=cmd_plan, positional_list="config")

    p = sub.add_parser("eval", help="evaluate a checkpoint on its data set's test split")
    p.add_argument("checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.root=/data")
    p.add_argument("--json", action="store_true", help="the results as JSON")
    p.set_defaults(func=cmd_eval, positional_list="overrides")

    p = sub.add_parser("config", help="print the resolved config, or with --describe every key",
                       description="fastkd config [CONFIG] [key=value ...] prints the resolved config; "
                                   "--describe prints every key with type, default, allowed values and meaning.")
    config_command.add_arguments(p)
    p.set_defaults(func=config_command.run, positional_list="config")

    p = sub.add_parser("demo", help="Spaced online KD vs online KD on the bundled digits data (CPU, < 3 min)")
    p.add_argument("--out", default="runs/demo", help="folder for both runs, the table and the plot")
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the demo's epoch count (>= 1)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("data", help="fetch data sets into the data root")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="{fetch}")
    p = data_sub.add_parser("fetch", help="download, verify and unpack data sets from their official archives",
                            description="Download CIFAR-10/100 (torchvision's archives) or Tiny-ImageNet (CS231n's "
                                        "archive), check the MD5 and unpack into the data root; a data set already "
                                        "there is left as it is.")
    p.add_argument("datasets", nargs="+", choices=tuple(DATASET_FOLDERS), metavar="DATASET",
                   help=f"{', '.join(DATASET_FOLDERS)}")
    p.add_argument("--root", help="the data root (as data.root; default $FASTKD_DATA, else ./data)")
    p.set_defaults(func=cmd_data_fetch)

    p = sub.add_parser("bench", help="fastkd vs the reference code's hot-path structure, in one run")
    from . import bench

    bench.add_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("reproduce", help="run the papers' experiment grids x seeds (resumable) and write their report")
    from . import reproduce

    reproduce.add_arguments(p)
    p.set_defaults(func=reproduce.run)

    p = sub.add_parser("compat", help="run a reference script's command line unchanged (drop-in backend)",
                       description="fastkd compat SCRIPT [reference flags...]: SCRIPT is train_space (= train_kd), "
                                   "self_kd, ema, dropout or run_net (the ViT pycls entry: --mode train --cfg FILE.yaml "
                                   "[KEY VALUE ...]); add --print-config or --plan [--json] to inspect.")
    p.add_argument("script", help="train_space | train_kd | self_kd | ema | dropout | run_net | export")
    p.add_argument("argv", nargs=argparse.REMAINDER, help="the reference script's flags, spelled as it spells them")
    p.set_defaults(func=cmd_compat)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse with flags and key=value overrides in any order (`train CFG --quiet a=1` as well as `train --quiet
    CFG a=1`): positionals argparse leaves over after a flag join the subcommand's positional list."""
    args, extras = parser.parse_known_args(argv)
    spill = getattr(args, "positional_list", None)
    unknown = [arg for arg in extras if arg.startswith("-") or spill is None]
    if unknown:
        raise UsageError(f"fastkd {args.command}: unrecognized arguments: {' '.join(unknown)} "
                         f"(see fastkd {args.command} --help)")
    if spill is not None:
        getattr(args, spill).extend(extras)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command. A FastkdError is the user's to fix: one line, its exit status (2 bad input, 1 I/O).
    Anything else is a bug in fastkd and keeps its traceback."""
    try:
        args = _parse(build_parser(), argv)
        status = args.func(args)
        distributed.teardown()
        return status
    except FastkdError as exc:  # a message of several lines (one per problem) gets the prefix on each
        return _failed("\n".join(f"fastkd: error: {line}" for line in str(exc).splitlines()), str(exc),
                       exc.exit_code)
    except RunInterrupted as exc:  # Ctrl-C in the training loop: last.pt saved, the message says how to go on
        return _failed(f"fastkd: {exc}", str(exc), exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before the loop, or a second one: checkpoints are atomic, none is half-written
        print("fastkd: interrupted; nothing was saved after the last checkpoint (a run folder with a last.pt "
              "continues with: fastkd train --resume RUN_DIR)", file=sys.stderr)
        return 130
    except (Exception, distributed.Terminated) as exc:
        if not distributed.is_active():
            raise
        return _rank_failed(exc)


def _failed(line: str, message: str, status: int) -> int:
    """One error line: printed by rank 0 under torchrun (another rank leaves it for rank 0)."""
    if distributed.is_main():
        print(line, file=sys.stderr, flush=True)
    else:
        distributed.report_failure(message)
    return status


def _rank_failed(exc: BaseException) -> int:
    """Under torchrun: rank 0 prints one line naming the rank that failed first; a rank with an unexpected error
    (a bug) leaves that line for rank 0 and keeps its traceback; a rank whose collective broke because another
    rank died, or that torchrun stopped, exits quietly."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    lost_contact = distributed.lost_contact(exc)
    if not distributed.is_main():
        if lost_contact:
            return 1
        distributed.report_failure(f"{type(exc).__name__}: {first}")
        raise exc
    line = distributed.failed_rank_line()
    if line is None and not lost_contact:
        raise exc
    line = line or f"lost contact with another rank ({first}); it died or did not answer within train.dist_timeout"
    print(f"fastkd: error: {line}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
