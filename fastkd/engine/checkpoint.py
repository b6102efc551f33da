"""Atomic checkpoints (temp file + os.replace) loaded with weights_only=True.

Reference checkpoint layouts (loading and export) live in fastkd.reference.keys.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import CheckpointError, OutputError
from .steps import SCHEDULES_OVER_EPOCHS

CHECKPOINT_VERSION = 1


def save_atomic(payload: dict, path: Path) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint's payload (a dict), or a one-line CheckpointError saying what the file is instead."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file; pass the file, e.g. {path / 'best.pt'}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path (a run folder holds last.pt and "
                              "best.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/unsafe files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first[:160]}); pass a .pt file torch.save "
                              "wrote (a file cut short by a full disk or an interrupted copy cannot be read)") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(payload).__name__}")
    return payload


# ------------------------------------------------------------------------------------------------ resume
RUN_STATE_KEYS = {"version": int, "config": dict, "epoch": int, "batch_index": int, "global_step": int,
                  "best": dict, "history": list, "learners": dict, "method": dict, "rng": dict}
"""What a run checkpoint holds (and its type): all of it is needed to continue a run exactly."""

RESUME_MAY_CHANGE = ("output_dir", "train.epochs", "train.max_steps", "train.checkpoints", "train.nonfinite",
                     "train.progress", "train.tensorboard", "train.log_every", "train.log_every_step",
                     "train.dist_timeout", "data.root", "data.download", "data.cache_dir", "log.wandb.project",
                     "log.wandb.entity", "log.wandb.name", "log.wandb.mode")
"""Keys `--resume` accepts overrides of: none changes what the resumed steps compute (train.epochs only upward;
output_dir only says where the run folder lives, which changes when a grid folder is moved).
Everything else (model, data, batch size, method, kd/ema/dropout, optimizer, seed, semantics, device, precision,
layout, evaluation) would silently break the continuation, so it is refused."""


def check_run_checkpoint(state: dict, path: Path) -> None:
    """Refuse, in one line, a checkpoint that cannot continue a run (another tool's file, a damaged one...)."""
    missing = [key for key in RUN_STATE_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: lacks {', '.join(missing)}, so it cannot continue a run exactly (not "
                              f"written by `fastkd train`, or damaged); start a new run from its weights with "
                              f"init_from={path}")
    wrong = [f"{key} ({type(state[key]).__name__}, expected {kind.__name__})"
             for key, kind in RUN_STATE_KEYS.items() if not isinstance(state[key], kind)]
    if wrong:
        raise CheckpointError(f"{path}: damaged run checkpoint: {', '.join(wrong)}; resume from an intact copy or "
                              f"start a new run with init_from={path}")
    if state["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {state['version']} (this fastkd reads "
                              f"{CHECKPOINT_VERSION}); continue it with the fastkd that wrote it")
    rng = state["rng"]
    if not {"torch", "python", "numpy"} <= set(rng):
        raise CheckpointError(f"{path}: holds no complete RNG state (has {sorted(rng) or 'none'}), so the run "
                              f"cannot continue exactly; start a new run from its weights with init_from={path}")


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_conflicts(saved: dict, config: dict, epochs_done: int) -> list[str]:
    """The config keys whose new value would change a resumed run, each as `key=new (run has old)`.

    `saved` is the config in the checkpoint, `config` the one the resumed run was given (both as JSON dicts).
    Keys the checkpoint predates are not compared; `train.channels_last: auto` means "whatever the run chose".
    """
    old, new = _flatten(saved), _flatten(config)
    conflicts = []
    for key, value in new.items():
        if key not in old or old[key] == value or (key == "train.channels_last" and value == "auto"):
            continue
        before = old[key]
        if key == "train.epochs":
            reason = _epochs_change(value, before, epochs_done, old)
            if reason:
                conflicts.append(f"train.epochs={value} ({reason})")
            continue
        if key in RESUME_MAY_CHANGE:
            continue
        conflicts.append(f"{key}={value!r} (run has {before!r})")
    return conflicts


def _epochs_change(value: int, before: int, epochs_done: int, old: dict[str, object]) -> str | None:
    """Why raising/lowering train.epochs would change the run, or None when it only extends/shortens its end."""
    if value < before and value < epochs_done:
        return f"the run has done {epochs_done} epochs already"
    if old.get("method") == "offline_kd":
        return f"offline_kd switches from teacher to student after train.epochs={before}"
    if old.get("optim.schedule") in SCHEDULES_OVER_EPOCHS:
        return f"the {old['optim.schedule']} schedule spans train.epochs={before}"
    return None


def state_mismatch(own: dict[str, torch.Tensor], loaded: object) -> str | None:
    """How a saved state_dict fails to fit a model (missing, unexpected, other shapes), or None when it fits."""
    if not isinstance(loaded, dict):
        return f"a {type(loaded).__name__} instead of a state_dict"
    missing = [k for k in own if k not in loaded]
    unexpected = [k for k in loaded if k not in own]
    not_tensors = [k for k in own if k in loaded and not isinstance(loaded[k], torch.Tensor)]
    shapes = [f"{k} {list(loaded[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in loaded and isinstance(loaded[k], torch.Tensor) and loaded[k].shape != own[k].shape]
    parts = [f"{len(keys)} {what} ({', '.join(keys[:2])}{', ...' if len(keys) > 2 else ''})"
             for what, keys in (("missing", missing), ("unexpected", unexpected), ("not tensors", not_tensors),
                                ("of another shape, saved vs model:", shapes)) if keys]
    return "; ".join(parts) or None


STALE_TEMP_PATTERNS = (".*.tmp", "metrics.tmp")
"""Temp files of atomic writes (`.last.pt.<random>.tmp`, `.best.pt.tmp`, `.metrics.csv.tmp` ...; `metrics.tmp`
from older versions) that a kill during a save leaves behind."""


def prepare_run_dir(run_dir: Path) -> None:
    """Check the run folder and the logs a run appends to are writable before any training (a read-only run
    folder fails now, in one line, not at the first save after an epoch), and remove stale temp files."""
    ensure_writable_folder(run_dir)
    for name in ("metrics.csv", "steps.jsonl"):
        try:
            if (run_dir / name).exists():
                with open(run_dir / name, "a"):
                    pass
        except OSError as exc:
            raise OutputError(f"{run_dir / name}: cannot append to it ({exc.strerror}); make the run folder "
                              "writable, or copy the run somewhere writable and resume the copy") from None
    for pattern in STALE_TEMP_PATTERNS:
        for stale in run_dir.glob(pattern):
            stale.unlink(missing_ok=True)


VIRTUAL_FILE_SYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))
"""Kernel file systems: writes there fail oddly or do harm, so no output folder may lie inside them."""


def ensure_writable_folder(folder: Path, what: str = "run folder") -> None:
    """Create `folder` and write a probe file in it, so an unusable output location stops the command before any
    data loading or training instead of at the first checkpoint. Raises OutputError (exit status 1)."""
    resolved = folder.resolve()
    for virtual in VIRTUAL_FILE_SYSTEMS:
        if resolved.is_relative_to(virtual):
            raise OutputError(f"{folder}: the {what} would be inside {virtual}, a virtual file system; "
                              "choose a folder on disk (output_dir=... or --out ...)")
    existing = next(p for p in (resolved, *resolved.parents) if p.exists())
    if not existing.is_dir():
        raise OutputError(f"{folder}: cannot create the {what}: {existing} is a file, not a folder; "
                          "choose another output_dir=... (or --out) or move the file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".fastkd-write-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write the {what} ({exc.strerror}); choose a writable "
                          "output_dir=... (or --out) or fix the folder's permissions") from None
