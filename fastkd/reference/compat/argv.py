"""A compat command line's flags: the reference script's own (spelled in full, parsed as the script parses them)
and the fastkd-only ones taken out before."""

from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass, field
from typing import Any

from ..errors import CompatError
from ..flags import FASTKD_FLAGS_HELP, Flag

class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus an error line and exits; fastkd reports one line (exit 2 via the CLI)."""

    def error(self, message: str):
        raise CompatError(f"{self.prog.removeprefix('fastkd compat ')}: {message} (-h lists the flags)")


def reference_parser(script: str, flags: tuple[Flag, ...]) -> _OneLineParser:
    parser = _OneLineParser(prog=f"fastkd compat {script}", formatter_class=argparse.RawDescriptionHelpFormatter,
                            description=f"The reference script's flags, as it spells them ({script}).",
                            epilog=FASTKD_FLAGS_HELP, allow_abbrev=False)
    for flag in flags:
        kwargs: dict[str, Any] = {"dest": flag.dest, "default": argparse.SUPPRESS, "required": flag.required,
                                  "help": flag.effect or ("required" if flag.required
                                                          else f"reference default: {flag.reference_default()}")}
        if flag.store_true:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = flag.type
            if flag.choices:
                kwargs["choices"] = flag.choices
        parser.add_argument(*flag.names, **kwargs)
    return parser


def spell_out_flags(script: str, flags: tuple[Flag, ...], argv: list[str]) -> tuple[list[str], list[str]]:
    """The reference argv with every flag spelled in full, plus a note per expanded abbreviation.

    A unique prefix of a double-dash flag is expanded, as the reference's argparse does (``--batch 64`` is
    ``--batch_size 64``). Anything else that looks like a flag and is not one is refused, named as given:
    argparse alone reads ``-bogus 1`` as ``-b ogus`` and ``-l`` as ``-lr``, so its error would name another flag.
    Values of valued flags are skipped; negative numbers are values.
    """
    known = {name: flag for flag in flags for name in flag.names}
    spelled: list[str] = []
    notes: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, value = token.partition("=")
        if name not in known and name.startswith("--"):
            matches = [n for n in known if n.startswith("--") and n.startswith(name)]
            if len(matches) == 1:
                notes.append(f"{name}: read as {matches[0]} (a unique prefix, as the reference's argparse reads it)")
                name = matches[0]
                token = name + eq + value
        if name in known:
            takes_value = not known[name].store_true and not eq
            if takes_value and i + 1 < len(argv) and argv[i + 1].partition("=")[0] not in known:
                spelled.append(f"{name}={argv[i + 1]}")  # attached, so a value like -inf is not read as a flag
                i += 2
            else:
                spelled.append(token)
                i += 1
            continue
        if token.startswith("-") and token not in ("-h", "--help") and not _is_number(token):
            end = i + 1
            while end < len(argv) and (not argv[end].startswith("-") or _is_number(argv[end])):
                end += 1
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise CompatError(f"{script}: unrecognized arguments: {' '.join(argv[i:end])} (unknown flag {token!r}: "
                              f"flags are spelled as the reference script spells them{hint}; -h lists the flags)")
        spelled.append(token)
        i += 1
    return spelled, notes


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


@dataclass
class Options:
    """The fastkd-only flags of one `fastkd compat` call."""

    print_config: bool = False
    plan: bool = False
    json: bool = False
    quiet: bool = False
    resume: bool = False
    data_root: str | None = None
    semantics: str = "reference"
    init_from: str | None = None
    overrides: list[str] = field(default_factory=list)


_SWITCHES = {"--print-config": "print_config", "--plan": "plan", "--json": "json", "--quiet": "quiet",
             "--resume": "resume"}
_VALUED = {"--data-root": "data_root", "--semantics": "semantics", "--init-from": "init_from"}


def split_fastkd_flags(argv: list[str]) -> tuple[Options, list[str]]:
    """Take the fastkd-only flags (exact spelling) out of argv; the rest goes to the reference's parser."""
    options = Options()
    rest: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, inline = token.partition("=")
        if token in _SWITCHES:
            setattr(options, _SWITCHES[token], True)
        elif name in _VALUED:
            if eq:
                value = inline
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                i += 1
                value = argv[i]
            else:
                raise CompatError(f"{name} needs a value")
            setattr(options, _VALUED[name], value)
        elif token == "--set":
            start = i + 1
            while i + 1 < len(argv) and "=" in argv[i + 1] and not argv[i + 1].startswith("-"):
                i += 1
            if i + 1 == start:
                raise CompatError("--set needs KEY=VALUE pairs, e.g. --set train.epochs=1 data.batch_size=64")
            options.overrides.extend(argv[start:i + 1])
        else:
            rest.append(token)
        i += 1
    if options.semantics not in ("reference", "standard"):
        raise CompatError(f"--semantics {options.semantics!r}: choose reference or standard")
    if options.print_config and options.plan:
        raise CompatError("--print-config and --plan: pick one")
    if options.json and not options.plan:
        raise CompatError("--json goes with --plan")
    return options, rest
