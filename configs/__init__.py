"""The configs shipped with fastkd (installed as package data): `demo` and the papers' `paper/FAMILY/DATASET/RUN`.

`fastkd train NAME`, `fastkd config list [PATTERN]` and `fastkd.train(NAME)` find them by name from any folder.
"""

from __future__ import annotations

import fnmatch
from importlib import resources
from pathlib import Path

SUFFIX = ".yaml"


def folder() -> Path:
    """The installed configs folder (the repository's configs/ in an editable install)."""
    return Path(str(resources.files(__name__)))


def names(pattern: str | None = None) -> list[str]:
    """Every packaged config's name (its path under configs/ without .yaml), sorted; with `pattern`, those matching
    it as a glob (`paper/vit/*`) or, without glob characters, containing it as a substring (`resnet18`)."""
    root = folder()
    found = sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob(f"*{SUFFIX}"))
    if pattern is None:
        return found
    if any(ch in pattern for ch in "*?["):
        return [name for name in found if fnmatch.fnmatchcase(name, pattern)]
    return [name for name in found if pattern in name]


def find(name: str) -> Path | None:
    """The packaged config called `name` (with or without .yaml), or None."""
    relative = name.removesuffix(SUFFIX)
    if not relative or relative.startswith(("/", ".")) or ".." in Path(relative).parts:
        return None
    path = folder() / f"{relative}{SUFFIX}"
    return path if path.is_file() else None
