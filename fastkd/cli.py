"""The `fastkd` command line. User errors print one line and exit 2 (1 for I/O).

Only the chosen command's arguments are built, and each command imports what it needs when it runs, so `--help`,
`--version` and argument errors answer without importing torch.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from dataclasses import dataclass
from typing import Callable

from . import __version__, launch
from .errors import ArgumentParser, CheckpointError, FastkdError, RunInterrupted, UsageError


# ------------------------------------------------------------------------------------------------ train
def cmd_train(args: argparse.Namespace) -> int:
    from .config import split_config_and_overrides

    config_path, overrides = split_config_and_overrides(args.config)
    if config_path is None and not args.resume:
        raise UsageError("fastkd train needs a CONFIG: a YAML file or a packaged config's name (fastkd config list), "
                         "e.g. fastkd train demo")
    from .runs import prepare_run, train_and_report  # after the argument checks: they answer before torch loads

    cfg, run_dir = prepare_run(config_path, overrides, resume=args.resume)
    return train_and_report(cfg, run_dir, resume=bool(args.resume), quiet=args.quiet, label="fastkd")


def add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="*", metavar="CONFIG [key=value ...]",
                   help="a YAML file or a packaged config's name (fastkd config list), then overrides")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=cmd_train, positional_list="config")


# ------------------------------------------------------------------------------------------------- plan
def cmd_plan(args: argparse.Namespace) -> int:
    from .config import load_config, split_config_and_overrides
    from .runs import build_plan, print_plan

    config_path, overrides = split_config_and_overrides(args.config)
    print_plan(build_plan(load_config(config_path, overrides)), as_json=args.json)
    return 0


def add_plan(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="+", metavar="CONFIG [key=value ...]")
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.set_defaults(func=cmd_plan, positional_list="config")


# ------------------------------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    from .runs import evaluate_checkpoint

    evaluation = evaluate_checkpoint(args.checkpoint, args.overrides)
    if args.json:
        print(json.dumps(evaluation.results, indent=2))
        return 0
    print(f"{args.checkpoint}: weights after epoch {evaluation.epochs_done}. Checkpoint policy: best.pt is last.pt as "
          f"of the epoch with the best test top-1 of '{evaluation.main_model}' (the method's main model); every "
          "other model is scored as of that same epoch, not at its own best.")
    for key, value in evaluation.results.items():  # accuracies in percent, as the training table shows them
        print(f"{key}: {100 * value:.2f}%" if key.endswith(("_top1", "_top5")) else f"{key}: {value:.4f}")
    return 0


def add_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.root=/data")
    p.add_argument("--json", action="store_true", help="the results as JSON (accuracies as fractions)")
    p.set_defaults(func=cmd_eval, positional_list="overrides")


# ----------------------------------------------------------------------------------------------- config
def cmd_config(args: argparse.Namespace) -> int:
    from . import configs
    from .config import command

    if args.config[:1] == ["list"]:
        if len(args.config) > 2 or args.describe:
            raise UsageError("fastkd config list takes at most one PATTERN, e.g. fastkd config list 'paper/vit/*'")
        pattern = args.config[1] if len(args.config) == 2 else None
        found = configs.names(pattern)
        if not found:
            raise UsageError(f"no packaged config matches {pattern!r}; fastkd config list shows them all")
        print("\n".join(found))
        return 0
    return command.run(args)


def add_config(p: argparse.ArgumentParser) -> None:
    from .config import command

    command.add_arguments(p)
    p.set_defaults(func=cmd_config, positional_list="config")


# ------------------------------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .demo import run_demo

    run_demo(Path(args.out), epochs=args.epochs, quiet=args.quiet)
    return 0


def add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="folder for both runs, the table and the plot")
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the demo's epoch count (>= 1)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)


# ------------------------------------------------------------------------------------------------- data
def cmd_data_fetch(args: argparse.Namespace) -> int:
    from .data.fetch import fetch

    for dataset in dict.fromkeys(args.datasets):
        folder, fetched = fetch(dataset, args.root)
        print(f"{dataset}: {'fetched into' if fetched else 'already present in'} {folder}", flush=True)
    return 0


def add_data(p: argparse.ArgumentParser) -> None:
    from .data.readers import DATASET_FOLDERS

    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="{fetch}")
    p = data_sub.add_parser("fetch", help="download, verify and unpack data sets from their official archives",
                            description="Download CIFAR-10/100 (torchvision's archives) or Tiny-ImageNet (CS231n's "
                                        "archive), check the MD5 and unpack into the data root; a data set already "
                                        "there is left as it is.")
    p.add_argument("datasets", nargs="+", choices=tuple(DATASET_FOLDERS), metavar="DATASET",
                   help=f"{', '.join(DATASET_FOLDERS)}")
    p.add_argument("--root", help="the data root (as data.root; default $FASTKD_DATA, else ./data)")
    p.set_defaults(func=cmd_data_fetch)


# -------------------------------------------------------------------------------- bench, reproduce, compat
def add_bench(p: argparse.ArgumentParser) -> None:
    from . import bench

    bench.add_arguments(p)
    p.set_defaults(func=bench.run)


def add_reproduce(p: argparse.ArgumentParser) -> None:
    from . import reproduce

    reproduce.add_arguments(p)
    p.set_defaults(func=reproduce.run)


def cmd_compat(args: argparse.Namespace) -> int:
    from .reference import compat

    return compat.run(args.script, args.argv)


def add_compat(p: argparse.ArgumentParser) -> None:
    p.add_argument("script", help="train_space | train_kd | self_kd | ema | dropout | run_net | export")
    p.add_argument("argv", nargs=argparse.REMAINDER, help="the reference script's flags, spelled as it spells them")
    p.set_defaults(func=cmd_compat)


# ------------------------------------------------------------------------------------------------- main
@dataclass(frozen=True)
class Command:
    """One `fastkd COMMAND`: its one-line help, and the function that adds its arguments (run only when chosen)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    description: str | None = None


COMMANDS: dict[str, Command] = {
    "train": Command("train from a YAML config (or a packaged config's name) with key=value overrides", add_train),
    "plan": Command("print what a config will do (iterations, replays) without training", add_plan),
    "eval": Command("evaluate a checkpoint on its data set's test split", add_eval),
    "config": Command("print the resolved config; --describe: every key; list [PATTERN]: the packaged configs",
                      add_config,
                      "fastkd config [CONFIG] [key=value ...] prints the resolved config; --describe prints every key "
                      "with type, default, allowed values and meaning; fastkd config list [PATTERN] names the packaged "
                      "configs (a glob, or a substring), which fastkd train takes by name from any folder."),
    "demo": Command("Spaced online KD vs online KD on the bundled digits data (CPU, < 3 min)", add_demo),
    "data": Command("fetch data sets into the data root", add_data),
    "bench": Command("fastkd vs the reference code's hot-path structure, in one run", add_bench),
    "reproduce": Command("run the papers' experiment grids x seeds (resumable) and write their report",
                         add_reproduce),
    "compat": Command("run a reference script's command line unchanged (drop-in backend)", add_compat,
                      "fastkd compat SCRIPT [reference flags...]: SCRIPT is train_space (= train_kd), self_kd, ema, "
                      "dropout or run_net (the ViT pycls entry: --mode train --cfg FILE.yaml [KEY VALUE ...]); add "
                      "--print-config or --plan [--json] to inspect."),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser naming every command; only `command`'s own arguments are built (`fastkd --help` builds none)."""
    parser = ArgumentParser(prog="fastkd", description="fastkd: a high-throughput trainer for spacing-effect "
                            "knowledge distillation. `fastkd COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"fastkd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        p = sub.add_parser(name, help=spec.help, description=spec.description or spec.help)
        if name == command:
            spec.add_arguments(p)
    return parser


def _chosen_command(argv: list[str]) -> str | None:
    """The command word of `argv` (the first argument that is not an option); a misspelt one is refused here,
    with the closest command named."""
    words = [arg for arg in argv if not arg.startswith("-")]
    if not words:
        return None
    if words[0] not in COMMANDS:
        close = difflib.get_close_matches(words[0], COMMANDS, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; choose one of {', '.join(COMMANDS)}"
        raise UsageError(f"unknown command {words[0]!r}{hint} (see fastkd --help)")
    return words[0]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse with flags and key=value overrides in any order (`train CFG --quiet a=1` as well as `train --quiet
    CFG a=1`): positionals argparse leaves over after a flag join the subcommand's positional list."""
    args, extras = build_parser(_chosen_command(argv)).parse_known_args(argv)
    spill = getattr(args, "positional_list", None)
    unknown = [arg for arg in extras if arg.startswith("-") or spill is None]
    if unknown:
        raise UsageError(f"{args.command}: unrecognized arguments: {' '.join(unknown)} "
                         f"(see fastkd {args.command} --help)")
    if spill is not None:
        getattr(args, spill).extend(extras)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command. A FastkdError is the user's to fix: one line, its exit status (2 bad input, 1 I/O).
    Anything else is a bug in fastkd and keeps its traceback."""
    try:
        args = _parse(sys.argv[1:] if argv is None else list(argv))
        status = args.func(args)
        distributed = _distributed()
        if distributed is not None:
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
    except BrokenPipeError:  # the reader went away (`fastkd config --describe | head`): stop quietly
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a command killed by the closed pipe reports it
    except Exception as exc:
        distributed = _distributed()
        if distributed is None or not distributed.is_active():
            raise
        return _rank_failed(distributed, exc)


def _distributed():
    """fastkd.engine.distributed when the command has loaded it (a command that never did joined no process group
    and may skip importing torch), else None."""
    return sys.modules.get(f"{__package__}.engine.distributed")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush into the closed pipe raises nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _failed(line: str, message: str, status: int) -> int:
    """One error line, printed by one process of a launch: rank 0 once the process group is joined (another rank
    leaves it there for rank 0), the launcher's rank 0 before that (each process would otherwise print it)."""
    distributed = _distributed()
    if distributed is not None and distributed.is_active():
        if distributed.is_main():
            print(line, file=sys.stderr, flush=True)
        else:
            distributed.report_failure(message)
    elif launch.rank() == 0:
        print(line, file=sys.stderr, flush=True)
    return status


def _rank_failed(distributed, exc: BaseException) -> int:
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
