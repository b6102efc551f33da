"""Reading a config: the strict YAML loader, `section.key=value` overrides, and one-line validation errors that
name the file or the override that set the bad value."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .. import configs
from ..errors import ConfigError
from .schema import ExperimentConfig

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and keys that are not strings: YAML's silent last-one-wins would hide
    a typo, and `1:` or `yes:` keys are never config names."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is not a name (keys are section or setting names; quote it if "
                                f"it is meant as text)", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (keep one)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """YAML -> Python with `_StrictLoader` (also how `fastkd compat run_net` reads a pycls YAML); a YAMLError
    becomes a ValueError of one line with its line number."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        reason = ", ".join(part for part in (exc.context, exc.problem) if part)
        hint = "; indent with spaces, YAML does not allow tabs" if "'\\t'" in (exc.problem or "") else ""
        raise ValueError(f"{reason}{where}{hint}") from None
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


def split_config_and_overrides(values: list[str]) -> tuple[str | None, list[str]]:
    """The optional CONFIG path is the first positional that is not key=value; the rest are overrides."""
    config = None
    overrides = []
    for value in values:
        if "=" in value or config is not None:
            overrides.append(value)
        else:
            config = value
    return config, overrides


def _override_key(text: str) -> list[str]:
    return text.split("=", 1)[0].strip().split(".")


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.epochs=10")
    path, raw = _override_key(text), text.split("=", 1)[1]
    if not all(part.strip() for part in path):
        raise ConfigError(f"command line override {text!r}: the key has an empty part; write section.key=value, "
                          "e.g. train.epochs=10")
    try:
        return path, parse_yaml(raw) if raw.strip() else None
    except ValueError as exc:
        raise ConfigError(f"command line override {text!r}: the value is not valid YAML ({exc}); quote it or fix "
                          "the brackets, e.g. optim.milestones=[60,120]") from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings (values parsed as YAML) onto a nested dict."""
    for text in overrides:
        path, value = _parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"command line override {text!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return raw


_KEY_PREFIX = re.compile(r"Value error, ([a-z_]+(?:\.[a-z_]+)+): ")
"""Cross-field checks (model validators) start their message with the dotted key they are about."""


def _error_key(err: dict[str, Any]) -> list[str]:
    """The key an error is about: the `key:` a cross-field check starts its message with, else its location."""
    match = _KEY_PREFIX.match(err["msg"])
    return match.group(1).split(".") if match else [str(p) for p in err["loc"]]


def _source_of(key: list[str], file_source: str, overrides: list[str]) -> str:
    """Where the bad value came from: the last command-line override that set the key (or a section around or
    inside it), else the file."""
    for text in reversed(overrides):
        path = _override_key(text)
        n = min(len(path), len(key))
        if n and path[:n] == key[:n]:
            return f"command line override {text!r}"
    return file_source


def _keys_beside(loc: tuple) -> list[str]:
    """The keys of the config section an unknown key `loc` sits in (none if the path is not a section)."""
    model: Any = ExperimentConfig
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _did_you_mean(word: Any, choices: list[str], section: str = "") -> str:
    """'; did you mean X?' for the closest of `choices` to a misspelt `word`, or ''."""
    close = difflib.get_close_matches(str(word), choices, n=1)
    return f"; did you mean {section + '.' if section else ''}{close[0]}?" if close else ""


def _format_error(source: str, err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        hint = _did_you_mean(err["loc"][-1], _keys_beside(err["loc"]), ".".join(map(str, err["loc"][:-1])))
        return f"{source}: unknown key '{key}' (check the spelling; `fastkd config --describe` lists every key){hint}"
    if kind == "literal_error":
        allowed = err.get("ctx", {}).get("expected", "")
        hint = _did_you_mean(str(value), re.findall(r"'([^']*)'", allowed)) if isinstance(value, str) else ""
        return f"{source}: {key}: {value!r} is not allowed; choose one of {allowed}{hint}"
    msg = err["msg"].removeprefix("Value error, ")
    if _KEY_PREFIX.match(err["msg"]):
        return f"{source}: {msg}"
    return f"{source}: {key}: {msg} (got {value!r})"


def validate(raw: dict[str, Any], source: str = "config", overrides: list[str] = ()) -> ExperimentConfig:
    """Validate a raw config; the error names `source`, or the command-line override that set the bad key."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(_format_error(_source_of(_error_key(err), source, list(overrides)), err)) from None


def load_config(path: str | Path | None, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment file (None = all defaults), apply overrides, validate."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = _config_file(path)
        source = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            close = difflib.get_close_matches(str(path).removesuffix(configs.SUFFIX), configs.names(), n=1)
            hint = f"; did you mean {close[0]}? (a packaged config, see fastkd config list)" if close else ""
            raise ConfigError(f"{path}: cannot read config ({exc.strerror}){hint}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a UTF-8 text file (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                              "a config is a YAML text file saved as UTF-8") from None
        try:
            raw = parse_yaml(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level (e.g. 'train:'), "
                              f"got a {type(raw).__name__}")
    return validate(apply_overrides(raw, list(overrides)), source, list(overrides))


def _config_file(path: str | Path) -> str | Path:
    """`path` itself where something is there, else the packaged config of that name (`fastkd config list`), so
    `fastkd train paper/online_kd/cifar100/resnet18_s1.5` works from any folder."""
    if Path(path).exists():
        return path
    return configs.find(str(path)) or path


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
