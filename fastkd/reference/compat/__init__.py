"""`fastkd compat SCRIPT ARGV...`: the reference scripts' own command lines, unchanged, on the fastkd engine.

SCRIPT names a reference entry point (docs/semantics.md §1):

=============  ======================================================================  ===========
SCRIPT         reference script                                                        flag style
=============  ======================================================================  ===========
train_space    Spaced-KD ``online_KD/train_space.py`` (alias ``train_kd``: the          ``-b 128``
               byte-identical spacing_generalization ``online_KD/train_kd.py``)
ema            spacing_generalization ``online_KD/train_EMA.py``                       ``-b 128``
self_kd        ``self_KD/train.py``                                                    ``--batchsize``
dropout        spacing_generalization ``dropout/train.py``                             ``--batch_size``
run_net        Spaced-KD ``vit/run_net.py``: pycls YAML plus ``KEY VALUE`` overrides   ``--cfg``
               (fastkd.reference.run_net)
export         fastkd run checkpoint -> the file the reference script writes/reads     (fastkd)
=============  ======================================================================  ===========

Each script's flags (fastkd.reference.flags) are parsed with the reference's own names, types, defaults and
choices, spelled in full (no argparse abbreviations: an unknown or misspelt flag is named as given), then mapped
onto an :class:`ExperimentConfig` with ``semantics: reference``. Flags that only steer the reference's
environment, or that the reference parses and never uses, are accepted and explained in one line each. Flags
fastkd cannot honour, and the inputs on which the reference itself crashes (docs/semantics.md §9), stop with one
line naming the flag; so do non-finite numbers. Model names are checked against fastkd's model registry. The
fastkd-only flags are listed in FASTKD_FLAGS_HELP (and by `fastkd compat SCRIPT -h`); docs/compat.md has the
flag-by-flag mapping.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ...config import apply_overrides, dump_config, validate
from ...runs import build_plan, print_plan, train_and_report
from ..errors import CompatError
from ..flags import FASTKD_FLAGS_HELP
from ..run_net import translate_command_line
from .argv import split_fastkd_flags
from .export import export_command
from .translate import Resolved, resolve, with_fastkd_options

__all__ = ["Resolved", "resolve", "run"]


def run(script: str, argv: list[str]) -> int:
    """`fastkd compat SCRIPT ARGV...`: print the config or plan, or train; user errors raise ConfigError."""
    if script == "export":
        return export_command(argv)
    if script == "run_net":
        return _run_net_command(argv)
    resolved = resolve(script, argv)
    for note in resolved.notes:
        print(f"fastkd compat: {note}", file=sys.stderr)
    cfg, options = resolved.config, resolved.options
    if options.print_config:
        print(dump_config(cfg), end="")
        return 0
    if options.plan:
        print_plan(build_plan(cfg), as_json=options.json)
        return 0
    return _train(resolved)


def _train(resolved: Resolved) -> int:
    cfg, options = resolved.config, resolved.options
    run_dir = Path(cfg.output_dir) / cfg.name
    if options.resume and not (run_dir / "last.pt").is_file():
        raise CompatError(f"--resume: no last.pt in {run_dir}; start without --resume")
    if not options.resume and (run_dir / "last.pt").exists():
        raise CompatError(f"{run_dir} already holds a run; add --resume to continue it, or --set name=OTHER")
    return train_and_report(cfg, run_dir, resume=options.resume, quiet=options.quiet,
                            label=f"fastkd compat {resolved.script}")


def _run_net_command(argv: list[str]) -> int:
    """`fastkd compat run_net --mode train --cfg FILE.yaml [KEY VALUE ...]` (fastkd.reference.run_net)."""
    if {"-h", "--help"} & set(argv):
        print("usage: fastkd compat run_net --mode train --cfg FILE.yaml [KEY VALUE ...] [fastkd flags]\n"
              "  reads the ViT reference's pycls YAML and KEY VALUE overrides (docs/compat.md, run_net)\n"
              f"{FASTKD_FLAGS_HELP}")
        return 0
    options, reference_argv = split_fastkd_flags(list(argv))
    translation = translate_command_line(reference_argv)
    raw = with_fastkd_options(translation.raw, options)
    raw["semantics"] = options.semantics
    config = validate(apply_overrides(raw, options.overrides), "fastkd compat run_net")
    for note in translation.notes:  # once the config stands, so a refusal stays one line
        print(f"fastkd compat: {note}", file=sys.stderr)
    if options.print_config:
        print(dump_config(config), end="")
        return 0
    if options.plan:
        print_plan(build_plan(config), as_json=options.json)
        return 0
    return _train(Resolved("run_net", config, translation.notes, options))
