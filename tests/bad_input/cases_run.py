"""Bad runs and checkpoints: `fastkd train --resume` of missing, damaged or mismatched runs, resume overrides that
would change the run, and `fastkd eval` of files that are not (fitting) checkpoints. Each answers in one line."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Callable

import torch

from case import BadInput, finished_run

LONGER_COSINE_RUN = ("train.epochs=2", "optim.schedule=cosine")
"""A second finished run (2 epochs, cosine schedule) for the train.epochs cases."""


def _edit(path: Path, change: Callable[[dict], Any]) -> None:
    """Load a checkpoint, let `change` damage it in place, save it back."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    change(state)
    torch.save(state, path)


def _resume(*overrides: str, edit: Callable[[dict], Any] | None = None,
            run: tuple[str, ...] = ()) -> Callable[[Path], list[str]]:
    """argv for `train --resume RUN overrides...` on a copy of a finished run, its last.pt optionally edited."""
    def argv(folder: Path) -> list[str]:
        run_dir = finished_run(folder, *run)
        if edit is not None:
            _edit(run_dir / "last.pt", edit)
        return ["train", "--resume", str(run_dir), *overrides]
    return argv


def _eval(*overrides: str, edit: Callable[[dict], Any] | None = None) -> Callable[[Path], list[str]]:
    """argv for `eval RUN/best.pt overrides...` on a copy of a finished run, best.pt optionally edited."""
    def argv(folder: Path) -> list[str]:
        run_dir = finished_run(folder)
        if edit is not None:
            _edit(run_dir / "best.pt", edit)
        return ["eval", str(run_dir / "best.pt"), *overrides]
    return argv


def _with_file(command: str, write: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    """argv for `eval FILE` / `train --resume RUN` where `write` makes the checkpoint file (or folder)."""
    def argv(folder: Path) -> list[str]:
        if command == "eval":
            path = folder / "model.pt"
            write(path)
            return ["eval", str(path)]
        run_dir = finished_run(folder)
        (run_dir / "last.pt").unlink()
        write(run_dir / "last.pt")
        return ["train", "--resume", str(run_dir)]
    return argv


def _truncated(path: Path) -> None:
    """The first half of a real checkpoint file, as a full disk or an interrupted copy leaves it."""
    buffer = io.BytesIO()
    torch.save({"learners": {"student": {"model": {"w": torch.zeros(64)}}}, "config": {}}, buffer)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])


class _RunsCode:
    """A pickle that would run code when unpickled without restrictions (weights_only refuses it)."""

    def __reduce__(self):
        return (print, ("fastkd bad-input case: this must never run",))


def _student(state: dict) -> dict:
    return state["learners"]["student"]["model"]


def _first_key(state: dict) -> str:
    return next(iter(_student(state)))


def _drop_student_key(state: dict) -> None:
    del _student(state)[_first_key(state)]


def _reshape_student_key(state: dict) -> None:
    _student(state)["net.fc.weight"] = torch.zeros(3, 3)


def _set(*keys: str, value: Any) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        node = state
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change


def _delete(*keys: str) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        node = state
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
    return change


def _other_width(state: dict) -> None:
    """The checkpoint and its config.yaml say width/32 while the weights are width/64 (a mixed-up run folder)."""
    state["config"]["model"]["student_downsample_factor"] = 32.0


def _config_yaml_edited(folder: Path) -> list[str]:
    run_dir = finished_run(folder)
    text = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(text.replace("batch_size: 256", "batch_size: 16"))
    return ["train", "--resume", str(run_dir)]


def _other_width_everywhere(folder: Path) -> list[str]:
    run_dir = finished_run(folder)
    _edit(run_dir / "last.pt", _other_width)
    text = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(text.replace("student_downsample_factor: 64.0",
                                                      "student_downsample_factor: 32.0"))
    return ["train", "--resume", str(run_dir)]


def _other_method(folder: Path) -> list[str]:
    run_dir = finished_run(folder)
    _edit(run_dir / "last.pt", _set("config", "method", value="online_kd"))
    return ["train", "--resume", str(run_dir)]


def _folder_without(name: str) -> Callable[[Path], list[str]]:
    def argv(folder: Path) -> list[str]:
        run_dir = finished_run(folder)
        (run_dir / name).unlink()
        return ["train", "--resume", str(run_dir)]
    return argv


def _empty_folder(folder: Path) -> list[str]:
    (folder / "empty").mkdir()
    return ["train", "--resume", str(folder / "empty")]


def _resume_a_file(folder: Path) -> list[str]:
    run_dir = finished_run(folder)
    return ["train", "--resume", str(run_dir / "last.pt")]


def _last_pt_is_folder(folder: Path) -> list[str]:
    run_dir = finished_run(folder)
    (run_dir / "last.pt").unlink()
    (run_dir / "last.pt").mkdir()
    return ["train", "--resume", str(run_dir)]


def _eval_folder(folder: Path) -> list[str]:
    return ["eval", str(finished_run(folder))]


REFUSED = "would change the run; a resumed run may change only"

CASES: list[BadInput] = [
    # ----------------------------------------------------------------- run: what --resume points at
    BadInput("resume-folder-missing", "run", lambda f: ["train", "--resume", str(f / "nowhere")],
             r"no such run folder"),
    BadInput("resume-path-is-the-checkpoint-file", "run", _resume_a_file, r"is a file; --resume takes the run folder"),
    BadInput("resume-folder-without-last-pt", "run", _empty_folder, r"no last\.pt checkpoint there"),
    BadInput("resume-last-pt-is-a-folder", "run", _last_pt_is_folder, r"no last\.pt checkpoint there"),
    BadInput("resume-folder-without-config-yaml", "run", _folder_without("config.yaml"), r"no config\.yaml there"),
    # ----------------------------------------------------------------- run: overrides that change the run
    BadInput("resume-override-lr", "run", _resume("optim.lr=0.5"), r"optim\.lr=0\.5 \(run has 0\.01\).*" + REFUSED),
    BadInput("resume-override-batch-size", "run", _resume("data.batch_size=16"),
             r"data\.batch_size=16 \(run has 256\)"),
    BadInput("resume-override-width", "run", _resume("model.student_downsample_factor=32"),
             r"model\.student_downsample_factor=32\.0 \(run has 64\.0\)"),
    BadInput("resume-override-dataset", "run", _resume("data.dataset=cifar10"),
             r"data\.dataset='cifar10' \(run has 'digits'\)"),
    BadInput("resume-override-seed", "run", _resume("seed=7"), r"seed=7 \(run has 0\)"),
    BadInput("resume-override-semantics", "run", _resume("semantics=standard"), r"semantics='standard'"),
    BadInput("resume-override-kd-alpha", "run", _resume("kd.alpha=0.5"), r"kd\.alpha=0\.5"),
    BadInput("resume-override-kd-interval", "run", _resume("kd.interval=2.0"), r"kd\.interval=2\.0"),
    BadInput("resume-override-momentum", "run", _resume("optim.momentum=0.5"), r"optim\.momentum=0\.5"),
    BadInput("resume-override-float64", "run", _resume("train.float64=true"), r"train\.float64=True"),
    BadInput("resume-override-eval-every", "run", _resume("train.eval_every=2"), r"train\.eval_every=2"),
    BadInput("resume-override-name", "run", _resume("name=elsewhere"), r"name='elsewhere'"),
    BadInput("resume-override-several-keys-named", "run", _resume("optim.lr=0.5", "seed=3", "train.epochs=4"),
             r"seed=3 \(run has 0\); optim\.lr=0\.5 \(run has 0\.01\)"),
    BadInput("resume-override-method", "run", _resume("method=online_kd", "kd.interval=0"),
             r"written by a spaced_online_kd run but the config asks for online_kd"),
    BadInput("resume-config-yaml-edited-batch-size", "run", _config_yaml_edited,
             r"data\.batch_size=16 \(run has 256\)"),
    BadInput("resume-epochs-below-done", "run", _resume("train.epochs=1", run=LONGER_COSINE_RUN),
             r"train\.epochs=1 \(the run has done 2 epochs already\)"),
    BadInput("resume-epochs-change-cosine-span", "run", _resume("train.epochs=3", run=LONGER_COSINE_RUN),
             r"train\.epochs=3 \(the cosine schedule spans train\.epochs=2\)"),
    BadInput("resume-epochs-change-warmup-cosine-span", "run",
             _resume("train.epochs=3", run=("train.epochs=2", "optim.schedule=warmup_cosine")),
             r"train\.epochs=3 \(the warmup_cosine schedule spans train\.epochs=2\)"),
    # ----------------------------------------------------------------- checkpoint: --resume of a damaged last.pt
    BadInput("resume-checkpoint-without-rng", "checkpoint", _resume(edit=_delete("rng")),
             r"last\.pt: lacks rng, so it cannot continue a run exactly.*init_from="),
    BadInput("resume-checkpoint-partial-rng", "checkpoint", _resume(edit=_set("rng", value={"torch": torch.zeros(3)})),
             r"holds no complete RNG state"),
    BadInput("resume-checkpoint-rng-wrong-type", "checkpoint",
             _resume(edit=_set("rng", "torch", value=torch.zeros(3, dtype=torch.float32))),
             r"optimizer, schedule or RNG state does not fit this run"),
    BadInput("resume-checkpoint-without-learners", "checkpoint", _resume(edit=_delete("learners")),
             r"lacks learners"),
    BadInput("resume-checkpoint-epoch-not-int", "checkpoint", _resume(edit=_set("epoch", value="1")),
             r"damaged run checkpoint: epoch \(str, expected int\)"),
    BadInput("resume-checkpoint-future-version", "checkpoint", _resume(edit=_set("version", value=99)),
             r"checkpoint format version 99"),
    BadInput("resume-checkpoint-missing-weight", "checkpoint", _resume(edit=_drop_student_key),
             r"student weights do not fit the configured model: 1 missing"),
    BadInput("resume-checkpoint-wrong-shape", "checkpoint", _resume(edit=_reshape_student_key),
             r"of another shape, saved vs model: \(net\.fc\.weight \[3, 3\] vs"),
    BadInput("resume-checkpoint-another-width", "checkpoint", _other_width_everywhere,
             r"student weights do not fit the configured model: .*of another shape"),
    BadInput("resume-checkpoint-another-method", "checkpoint", _other_method,
             r"written by a online_kd run but the config asks for spaced_online_kd"),
    BadInput("resume-checkpoint-optimizer-state-damaged", "checkpoint",
             _resume(edit=_set("learners", "student", "optimizer", value={})),
             r"optimizer, schedule or RNG state does not fit this run"),
    BadInput("resume-checkpoint-method-state-damaged", "checkpoint", _resume(edit=_set("method", value={})),
             r"spaced_online_kd state does not load"),
    BadInput("resume-checkpoint-truncated", "checkpoint", _with_file("resume", _truncated),
             r"last\.pt: not a readable checkpoint"),
    BadInput("resume-checkpoint-is-text", "checkpoint",
             _with_file("resume", lambda p: p.write_text("not a checkpoint\n")), r"not a readable checkpoint"),
    BadInput("resume-checkpoint-is-a-list", "checkpoint", _with_file("resume", lambda p: torch.save([1, 2], p)),
             r"expected a dict checkpoint, found list"),
    # ----------------------------------------------------------------- checkpoint: fastkd eval
    BadInput("eval-missing-file", "checkpoint", lambda f: ["eval", str(f / "missing.pt")], r"no such checkpoint file"),
    BadInput("eval-a-folder", "checkpoint", _eval_folder, r"is a folder, not a checkpoint file.*best\.pt"),
    BadInput("eval-truncated-file", "checkpoint", _with_file("eval", _truncated), r"not a readable checkpoint"),
    BadInput("eval-empty-file", "checkpoint", _with_file("eval", lambda p: p.write_bytes(b"")),
             r"not a readable checkpoint"),
    BadInput("eval-text-file", "checkpoint", _with_file("eval", lambda p: p.write_text("weights: none\n")),
             r"not a readable checkpoint"),
    BadInput("eval-pickle-that-runs-code", "checkpoint",
             _with_file("eval", lambda p: p.write_bytes(pickle.dumps({"x": _RunsCode()}))),
             r"not a readable checkpoint"),
    BadInput("eval-plain-state-dict", "checkpoint",
             _with_file("eval", lambda p: torch.save({"conv1.weight": torch.zeros(1)}, p)),
             r"not a fastkd run checkpoint.*init_from="),
    BadInput("eval-config-not-a-mapping", "checkpoint", _eval(edit=_set("config", value="x")),
             r"not a fastkd run checkpoint"),
    BadInput("eval-missing-weight", "checkpoint", _eval(edit=_drop_student_key),
             r"student weights do not fit the configured model: 1 missing"),
    BadInput("eval-wrong-shape", "checkpoint", _eval(edit=_reshape_student_key), r"of another shape"),
    BadInput("eval-width-override", "checkpoint", _eval("model.student_downsample_factor=32"),
             r"student weights do not fit the configured model: .*of another shape.*model\.\* settings"),
    BadInput("eval-unexpected-weight", "checkpoint",
             _eval(edit=lambda s: _student(s).__setitem__("extra.weight", torch.zeros(1))), r"1 unexpected"),
    BadInput("eval-weight-not-a-tensor", "checkpoint",
             _eval(edit=lambda s: _student(s).__setitem__("net.fc.weight", 3)), r"1 not tensors"),
    BadInput("eval-model-not-a-state-dict", "checkpoint", _eval(edit=_set("learners", "student", "model", value=3)),
             r"student weights do not fit the configured model: a int instead of a state_dict"),
    BadInput("eval-learners-without-student", "checkpoint", _eval(edit=_delete("learners", "student")),
             r"holds no student weights \(models in it: teacher\)"),
    BadInput("eval-method-state-damaged", "checkpoint", _eval(edit=_set("method", value={})),
             r"spaced_online_kd state does not load"),
]
