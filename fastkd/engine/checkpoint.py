"""Atomic checkpoints (temp file + os.replace) loaded with weights_only=True, and reference-layout weight import."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from ..models import strip_module_prefix

CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """An unreadable or mismatched checkpoint; the message is one line."""


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
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/unsafe files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first[:160]})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(payload).__name__}")
    return payload


REFERENCE_PAIR_KEYS = {"teacher_model": "teacher", "student_model": "student"}
"""The online-KD reference's (commented-out) save format: unwrapped teacher/student wrapper states."""
LAZY_PREFIXES = ("adaptation_layers.",)
"""Parameters the reference creates after its model (self KD's adaptation layers, built at the first iteration):
a state saved from the unwrapped model lacks them, and fastkd keeps its own fresh ones."""


def init_weights(path: str | Path, models: dict[str, nn.Module]) -> list[str]:
    """Load teacher/student weights from a fastkd checkpoint or a reference-layout state_dict.

    Accepted: a fastkd run checkpoint (``learners.<name>.model``); a dict ``{"teacher": sd, "student": sd}`` or
    the reference's ``{"teacher_model": sd, "student_model": sd}``; the ``{"model": sd}`` files train_EMA.py and
    dropout/train.py write; or one state_dict (optionally DataParallel-prefixed ``module.``) matching a model, or
    a bare backbone, which is loaded into every ``net`` it fits. A state lacking only the self-KD adaptation
    layers loads with fresh ones. Returns the names of the models loaded. Key mapping: docs/compat.md.
    """
    payload = load_checkpoint(path)
    if set(payload) == {"model"} and isinstance(payload["model"], dict):
        payload = payload["model"]
    if "learners" in payload:
        sources = {n: payload["learners"][n]["model"] for n in models if n in payload["learners"]}
    elif any(k in payload for k in REFERENCE_PAIR_KEYS) and all(isinstance(v, dict) for v in payload.values()):
        sources = {REFERENCE_PAIR_KEYS[k]: strip_module_prefix(v) for k, v in payload.items()
                   if REFERENCE_PAIR_KEYS.get(k) in models}
    elif any(k in payload for k in ("teacher", "student")) and all(isinstance(v, dict) for v in payload.values()):
        sources = {n: strip_module_prefix(payload[n]) for n in models if n in payload}
    else:
        sd = strip_module_prefix({k: v for k, v in payload.items() if isinstance(v, torch.Tensor)})
        sources = {}
        for name, model in models.items():
            own = model.state_dict()
            missing = set(own) - set(sd)
            if set(sd) <= set(own) and sd and all(k.startswith(LAZY_PREFIXES) for k in missing):
                sources[name] = {**own, **sd}
            elif sd and all(f"net.{k}" in own for k in sd):
                sources[name] = {**own, **{f"net.{k}": v for k, v in sd.items()}}
    if not sources:
        raise CheckpointError(f"{path}: its keys match none of the models ({', '.join(models)}); "
                              "check the model names in the config")
    for name, sd in sources.items():
        try:
            models[name].load_state_dict(sd)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: {name} weights do not fit the configured model "
                                  f"({str(exc).splitlines()[0][:160]})") from None
    return sorted(sources)
