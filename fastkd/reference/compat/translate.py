"""A reference command line -> the fastkd config it runs: the script's translator, its wandb flags, the fastkd-only
flags and `--set` overrides, validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pydantic import ValidationError

from ...config import ExperimentConfig, WandbConfig, apply_overrides, validate
from ..errors import CompatError
from ..flags import DROPOUT_FLAGS, EMA_FLAGS, ONLINE_KD_FLAGS, SCRIPTS, SELF_KD_FLAGS, Flag
from .argv import Options, reference_parser, spell_out_flags, split_fastkd_flags
from .common import Draft
from .dropout import translate_dropout
from .ema import translate_ema
from .online_kd import translate_online_kd
from .self_kd import translate_self_kd


@dataclass
class Resolved:
    """A reference command line, translated: the config to run, the notes to print, the fastkd options."""

    script: str
    config: ExperimentConfig
    notes: list[str]
    options: Options


WANDB_PLACEHOLDER_ENTITY = "none"
"""The online-KD and self-KD scripts' default -wandb_entity: passed to wandb as an entity literally named 'none'."""


def _wandb_logging(script: str, flags: tuple[Flag, ...], v: dict[str, Any], given: set[str],
                   run_name: str) -> tuple[dict[str, Any], list[str]]:
    """log.wandb for the reference's wandb flags, and one note per flag given. The reference logs every run to
    wandb (project, entity, its run name, every step's losses); fastkd does so when either flag is given, and
    logs to metrics.csv only (no wandb account needed) when neither is."""
    if not {"wandb_entity", "wandb_project"} & given:
        return {}, []
    spelled = {flag.dest: flag.names[0] for flag in flags}
    entity = v["wandb_entity"] if "wandb_entity" in given else None
    if entity == WANDB_PLACEHOLDER_ENTITY:
        entity = None
    wandb = {"project": v["wandb_project"], "entity": entity, "name": run_name}
    try:
        WandbConfig.model_validate(wandb)
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = spelled[f"wandb_{err['loc'][0]}"]
        raise CompatError(f"{script}: {flag} {err['input']}: {err['msg'].removeprefix('Value error, ')}") from None
    where = (f"logs to wandb project {wandb['project']} as run {run_name} with every step's losses "
             "(log.wandb.*, train.log_every_step), as the reference does")
    notes = []
    if "wandb_entity" in given:
        detail = ("the reference's placeholder for no entity: wandb's default entity is used" if entity is None
                  else "the wandb entity (log.wandb.entity)")
        notes.append(f"{spelled['wandb_entity']} {v['wandb_entity']}: {detail}"
                     + ("" if "wandb_project" in given else f"; {where} (the reference's default project)"))
    if "wandb_project" in given:
        notes.append(f"{spelled['wandb_project']} {v['wandb_project']}: {where}")
    return wandb, notes


_SCRIPTS: dict[str, tuple[tuple[Flag, ...], Callable[..., Draft]]] = {
    "train_space": (ONLINE_KD_FLAGS, translate_online_kd),
    "train_kd": (ONLINE_KD_FLAGS, translate_online_kd),
    "ema": (EMA_FLAGS, translate_ema),
    "self_kd": (SELF_KD_FLAGS, translate_self_kd),
    "dropout": (DROPOUT_FLAGS, translate_dropout),
}


def resolve(script: str, argv: list[str]) -> Resolved:
    """Parse a reference command line (plus fastkd-only flags) into the config fastkd will run."""
    if script not in _SCRIPTS:
        raise CompatError(f"unknown script {script!r}; choose one of: {', '.join(SCRIPTS)}")
    options, reference_argv = split_fastkd_flags(list(argv))
    flags, translate = _SCRIPTS[script]
    reference_argv, spelling_notes = spell_out_flags(script, flags, reference_argv)
    given = vars(reference_parser(script, flags).parse_args(reference_argv))
    values = {f.dest: f.reference_default() for f in flags} | given
    notes = spelling_notes
    for flag in flags:
        if flag.effect and flag.dest in given:
            shown = flag.names[0] if flag.store_true else f"{flag.names[0]} {given[flag.dest]}"
            notes.append(f"{shown}: {flag.effect}")
    draft = translate(script, values, set(given), options.semantics)
    notes.extend(draft.notes)

    raw = draft.raw
    wandb, wandb_notes = _wandb_logging(script, flags, values, set(given), raw["name"])
    if wandb:
        raw["log"] = {"wandb": wandb}
        raw["train"]["log_every_step"] = True
    notes.extend(wandb_notes)
    config = validate(apply_overrides(with_fastkd_options(raw, options), options.overrides),
                      f"fastkd compat {script}")
    return Resolved(script, config, notes, options)


def with_fastkd_options(raw: dict[str, Any], options: Options) -> dict[str, Any]:
    """The translated config with what the fastkd-only flags set. The data is fetched when missing, as the
    reference's torchvision loaders download it, into --data-root (else the reference's own flag for it, else
    $FASTKD_DATA, else ./data: the data.root rule)."""
    raw["data"]["download"] = True
    if options.data_root is not None:
        raw["data"]["root"] = options.data_root
    if options.init_from is not None:
        raw["init_from"] = options.init_from
    return raw
