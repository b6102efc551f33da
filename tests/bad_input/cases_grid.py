"""Bad `fastkd reproduce` grid folders: a damaged grid.json, summary.json or accuracy value, and grid or report
locations that cannot be written. Each answers in one line, whether the grid is reported or run again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from case import BadInput
from fastkd.reproduce.grid import build_grid, record_grid

SMOKE = ["reproduce", "online_kd", "--scale", "smoke", "--epochs", "1", "--quiet"]
"""A smoke grid of two runs (online baseline and s=1.0) on the bundled digits."""


def _finished_grid(folder: Path) -> Path:
    """FOLDER/grid: the smoke grid's record and a finished summary.json for each run (no training needed)."""
    out = folder / "grid"
    runs = build_grid(("online_kd",), seeds=(0,), out=out, data_root=None, scale="smoke", epochs=1)
    record_grid(out, runs)
    for run in runs:
        Path(run.run_dir).mkdir(parents=True)
        summary = {"finished": True, "epochs_done": 1, "run_dir": run.run_dir}
        summary.update({f"{m}_{w}_top1": 0.5 for m in ("teacher", "student") for w in ("best", "final")})
        (Path(run.run_dir) / "summary.json").write_text(json.dumps(summary))
    return out


def _damaged(damage: Callable[[Path], None], *, rerun: bool = False) -> Callable[[Path], list[str]]:
    """argv reporting (or with `rerun`, running again) a finished grid that `damage` broke."""
    def argv(folder: Path) -> list[str]:
        out = _finished_grid(folder)
        damage(out)
        return [*SMOKE, "--out", str(out)] if rerun else ["reproduce", "--report", str(out)]
    return argv


def _grid_json(text: str) -> Callable[[Path], None]:
    return lambda out: (out / "grid.json").write_text(text)


def _summary(change: Callable[[dict], object] | str) -> Callable[[Path], None]:
    """Rewrite the s=1.0 run's summary.json: `change` edits the dict in place, or a str replaces the file."""
    def damage(out: Path) -> None:
        path = out / "online_kd/digits/resnet18_s1.0-seed0/summary.json"
        if isinstance(change, str):
            path.write_text(change)
            return
        summary = json.loads(path.read_text())
        change(summary)
        path.write_text(json.dumps(summary))
    return damage


def _drop_field(out: Path) -> None:
    grid = json.loads((out / "grid.json").read_text())
    for run in grid.values():
        del run["seed"]
    (out / "grid.json").write_text(json.dumps(grid))


def _with_file(name: str) -> Callable[[Path], list[str]]:
    def argv(folder: Path) -> list[str]:
        (folder / name).write_text("a file")
        return [*SMOKE, "--out", str(folder / name)]
    return argv


def _report_folder_is_a_file(folder: Path) -> list[str]:
    out = _finished_grid(folder)
    (out / "report").write_text("a file")
    return ["reproduce", "--report", str(out)]


CASES: list[BadInput] = [
    BadInput("grid-json-not-json", "run", _damaged(_grid_json("{\"online_kd/")),
             r"grid\.json: damaged \(JSONDecodeError: .*restore it, or delete it and re-run the grid"),
    BadInput("grid-json-a-list", "run", _damaged(_grid_json("[1, 2]")), r"grid\.json: damaged \(AttributeError"),
    BadInput("grid-json-run-not-a-mapping", "run", _damaged(_grid_json('{"a": 3}')), r"grid\.json: damaged \(TypeError"),
    BadInput("grid-json-run-lacks-a-field", "run", _damaged(_drop_field), r"grid\.json: damaged \(TypeError: .*seed"),
    BadInput("grid-json-damaged-on-rerun", "run", _damaged(_grid_json("not json"), rerun=True),
             r"grid\.json: damaged \(JSONDecodeError"),
    BadInput("grid-summary-not-json", "run", _damaged(_summary("{\"finished\": tr")),
             r"resnet18_s1\.0-seed0/summary\.json: damaged \(not a JSON object\); delete it and run the grid again"),
    BadInput("grid-summary-a-list", "run", _damaged(_summary("[]")), r"summary\.json: damaged \(not a JSON object\)"),
    BadInput("grid-accuracy-not-a-number", "run",
             _damaged(_summary(lambda s: s.update(student_best_top1="abc"))),
             r"summary\.json: student_best_top1='abc' is not an accuracy in \[0, 1\]"),
    BadInput("grid-accuracy-in-percent", "run", _damaged(_summary(lambda s: s.update(teacher_final_top1=75.0))),
             r"teacher_final_top1=75\.0 is not an accuracy in \[0, 1\]"),
    BadInput("grid-accuracy-a-bool", "run", _damaged(_summary(lambda s: s.update(student_final_top1=True))),
             r"student_final_top1=True is not an accuracy"),
    BadInput("grid-report-folder-is-a-file", "output", _report_folder_is_a_file,
             r"grid/report: cannot create the report folder: .* is a file", exit_code=1),
    BadInput("grid-out-is-a-file", "output", _with_file("taken"),
             r"taken: cannot create the grid folder: .*taken is a file", exit_code=1),
    BadInput("grid-gpus-per-run-beyond-this-machine", "cli", lambda folder: [*SMOKE, "--gpus-per-run", "4096"],
             r"--gpus-per-run 4096: this machine has .*, so a run takes at most \d+ processes here"),
    BadInput("grid-out-in-proc", "output", lambda folder: [*SMOKE, "--out", "/proc/fastkd-grid"],
             r"/proc/fastkd-grid: the grid folder would be inside /proc, a virtual file system", exit_code=1),
]
