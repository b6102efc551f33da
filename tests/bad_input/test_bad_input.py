"""Every class of bad input gets one line naming what is wrong, the right exit status and no traceback.

The cases live in the ``cases_*.py`` modules next to this file (one per class family, each exporting ``CASES``);
each runs through ``fastkd.cli.main`` in-process with a fresh empty folder as the working directory.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import re
import time
from pathlib import Path

import pytest

from case import KINDS, BadInput
from fastkd.cli import main

HERE = Path(__file__).parent
REPO = HERE.parents[1]
CASE_MODULES = sorted(path.stem for path in HERE.glob("cases_*.py"))
CASES: list[BadInput] = [case for name in CASE_MODULES for case in importlib.import_module(name).CASES]
SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", ".benchmarks"}
FASTKD_OUTPUTS = ("runs", ".fastkd-cache", "*.pt", "*.pth", "*.csv", "*.jsonl", "*.png", "*.tmp", "summary.json",
                  "config.yaml", ".fastkd-*", "events.out.tfevents.*")
"""Names of what fastkd writes (run folders, caches, checkpoints, logs, plots, temp files). The repository check
looks only for these, so source files people edit while the tests run are not mistaken for escapes."""


def _outputs_changed_since(root: Path, since: float) -> list[Path]:
    """fastkd outputs under `root` created or modified after `since` (virtualenv, git and caches skipped)."""
    changed = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        for name in dirs + files:
            path = Path(folder) / name
            try:
                if path.lstat().st_mtime >= since and any(fnmatch.fnmatch(name, p) for p in FASTKD_OUTPUTS):
                    changed.append(path)
            except FileNotFoundError:  # removed while walking
                pass
    return changed


def test_case_table_is_large_unique_and_classified():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    assert {case.kind for case in CASES} <= set(KINDS)
    assert all(case.exit_code in (1, 2) for case in CASES)
    assert len(CASES) >= 150, f"{len(CASES)} bad-input cases in {CASE_MODULES}"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_answers_in_one_line(case: BadInput, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = case.argv(work)
    capsys.readouterr()  # whatever building the inputs printed is not the answer
    started = time.time() - 1  # file systems with coarse timestamps
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse answers usage errors by exiting
        code = exc.code
    out, err = capsys.readouterr()

    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got stderr:\n{err}"
    assert lines[0].startswith("fastkd"), lines[0]
    assert re.search(case.message, lines[0]), f"{case.message!r} not in {lines[0]!r}"
    assert code == case.exit_code, lines[0]
    outside = [p for p in _outputs_changed_since(REPO, started) if not p.is_relative_to(tmp_path)]
    outside += [p for p in tmp_path.iterdir() if p != work]  # e.g. a run folder escaping via name=../..
    assert not outside, f"written outside the case folder: {outside}"
