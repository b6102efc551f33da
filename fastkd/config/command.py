"""`fastkd config` (and `python -m fastkd.config`): print the resolved config, or `--describe` every key of the schema
with its type, default, allowed values and description."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Annotated, Any, Literal, Union

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..errors import ArgumentParser, FastkdError, UsageError
from .loading import dump_config, load_config, split_config_and_overrides
from .schema import ExperimentConfig


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return "choice"
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is tuple:
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    if origin is list:
        return f"list of {_type_name(args[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(metadata: list[Any]) -> list[str]:
    symbols = {annotated_types.Gt: ("gt", ">"), annotated_types.Ge: ("ge", ">="), annotated_types.Lt: ("lt", "<"),
               annotated_types.Le: ("le", "<=")}
    out = []
    for item in metadata:
        for cls, (attr, symbol) in symbols.items():
            if isinstance(item, cls):
                bound = getattr(item, attr)
                out.append(f"{symbol} {bound if isinstance(bound, int) else format(bound, 'g')}")
        if isinstance(item, annotated_types.MinLen):
            out.append("not empty")
    return out


def _allowed(annotation: Any, metadata: list[Any]) -> str:
    """Human-readable allowed values: the choices of a Literal, bounds, finiteness of floats."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_allowed(a, metadata) if a is not type(None) else "null" for a in args)
    if origin is tuple:
        return "each " + _allowed(args[0], [])
    if origin is list:
        return "each " + _allowed(args[0], [])
    if origin is Annotated:
        return _allowed(args[0], [*args[1:], *metadata])
    for item in metadata:
        if isinstance(item, FieldInfo):
            metadata = [*metadata, *item.metadata]
    bounds = _bounds(metadata)
    if annotation is float:
        bounds.append("finite")
    if annotation is bool:
        bounds.append("true, false")
    if annotation is str and not bounds:
        bounds.append("any text")
    return ", ".join(bounds) or "any"


def describe(model: type[BaseModel] = None, prefix: str = "") -> list[str]:
    """Two lines per key: `key  type  default  allowed`, then its one-line description."""
    model = model or ExperimentConfig
    lines = []
    for name, field in model.model_fields.items():
        key = prefix + name
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            lines += describe(field.annotation, key + ".")
            continue
        default = field.get_default(call_default_factory=True)
        shown = yaml.safe_dump(default, default_flow_style=True).removesuffix("...\n").strip()
        lines.append(f"{key}  ({_type_name(field.annotation)}, default {shown}, "
                     f"allowed: {_allowed(field.annotation, field.metadata)})")
        lines.append("    " + " ".join((field.description or "").split()))
    return lines

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="*", metavar="[CONFIG] [key=value ...]",
                        help="a YAML experiment file and/or section.key=value overrides")
    parser.add_argument("--describe", action="store_true",
                        help="print every key with its type, default, allowed values and description")


def run(args: argparse.Namespace) -> int:
    """Print the resolved config, or with --describe the schema."""
    if args.describe:
        if args.config:
            raise UsageError("--describe prints the schema of every config; leave out CONFIG and overrides")
        print("\n".join(describe()))
        return 0
    path, overrides = split_config_and_overrides(args.config)
    print(dump_config(load_config(path, overrides)), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m fastkd.config",
                            description="Print the resolved experiment config (file + overrides), or every key.")
    add_arguments(parser)
    try:
        return run(parser.parse_intermixed_args(argv))
    except FastkdError as exc:
        print(f"fastkd: error: {exc}", file=sys.stderr)
        return exc.exit_code
