"""State-dict key maps between fastkd's models and the reference code's checkpoints, in both directions.

fastkd's models use the reference's parameter names (docs/semantics.md §3), so the maps only add or remove the
wrappers the reference scripts put around their models: DataParallel's ``module.``, the online-KD scripts'
``{'teacher_model': .., 'student_model': ..}`` pair, the ``{'model': sd}`` files of train_EMA.py and
dropout/train.py, and self KD's adaptation layers, which live on the DataParallel wrapper. Tables:
docs/compat.md (Checkpoints) and docs/checkpoint-keys-selfkd-dropout.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..engine.checkpoint import load_checkpoint
from ..errors import CheckpointError
from ..methods.registry import get_method, method_names
from .errors import CompatError

DATA_PARALLEL_PREFIX = "module."
COMPILE_PREFIX = "_orig_mod."
"""What a ``torch.compile`` wrapper puts before every key; never part of either side's layout."""
ADAPTATION_PREFIX = "adaptation_layers."
"""Self KD's adaptation layers: the reference hangs them on the DataParallel wrapper, so they carry no ``module.``."""
REFERENCE_PAIR_KEYS = {"teacher_model": "teacher", "student_model": "student"}
"""The online-KD reference's (commented-out) save format: unwrapped teacher/student wrapper states."""
LAZY_PREFIXES = (ADAPTATION_PREFIX,)
"""Parameters the reference creates after its model (self KD's adaptation layers, built at the first iteration):
a state saved from the unwrapped model lacks them, and fastkd keeps its own fresh ones."""

StateDict = dict[str, torch.Tensor]


# -------------------------------------------------------------------------------------------- prefixes
def strip_module_prefix(state_dict: StateDict) -> StateDict:
    """Reference checkpoints come from DataParallel-wrapped modules: drop the leading ``module.``."""
    return {k.removeprefix(DATA_PARALLEL_PREFIX): v for k, v in state_dict.items()}


def add_module_prefix(state_dict: StateDict) -> StateDict:
    """The reverse mapping, for saving a state_dict the reference's DataParallel wrappers load."""
    return {DATA_PARALLEL_PREFIX + k: v for k, v in state_dict.items()}


def strip_compile_prefix(state_dict: StateDict) -> StateDict:
    """Drop a ``torch.compile`` wrapper's ``_orig_mod.`` prefix."""
    return {k.removeprefix(COMPILE_PREFIX): v for k, v in state_dict.items()}


# ------------------------------------------------------------------------------------- self-KD ResNet
def selfkd_from_reference(state_dict: StateDict) -> StateDict:
    """The reference's self-KD ``net`` state -> fastkd ``SelfKDResNet`` keys.

    The reference's ``net`` is a DataParallel wrapper whenever a GPU is visible: its model keys carry
    ``module.`` and its adaptation layers sit on the wrapper itself as ``adaptation_layers.{0,1,2}``.
    Both that layout and an unwrapped one (``net.module.state_dict()``, no adaptation layers) map here;
    load the latter into a model built with ``with_adaptation_layers=False`` or with ``strict=False``.
    """
    return strip_module_prefix(state_dict)


def selfkd_to_reference(state_dict: StateDict, data_parallel: bool = True) -> StateDict:
    """fastkd ``SelfKDResNet`` keys -> the state_dict of the reference's ``net``.

    With ``data_parallel`` (the reference's layout whenever it trains on a GPU) the model keys get
    ``module.`` and the adaptation layers stay unprefixed; without it the keys are unchanged. A
    ``torch.compile`` wrapper's ``_orig_mod.`` prefix is dropped first.
    """
    mapped = {}
    for key, value in strip_compile_prefix(state_dict).items():
        if data_parallel and not key.startswith(ADAPTATION_PREFIX):
            key = DATA_PARALLEL_PREFIX + key
        mapped[key] = value
    return mapped


# ------------------------------------------------------------------------------------- dropout ResNet
def dropout_from_reference(state_dict: dict[str, Any]) -> StateDict:
    """A dropout/train.py checkpoint -> fastkd ``DropoutResNet`` keys.

    Accepts the raw ``cnn.state_dict()`` or the reference's saved payload ``{'model': state_dict}``;
    a ``module.`` prefix (a user's DataParallel wrapper) is stripped. The keys are otherwise identical.
    """
    if set(state_dict) == {"model"} and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    return strip_module_prefix(state_dict)


def dropout_to_reference(state_dict: StateDict) -> StateDict:
    """fastkd keys -> the reference's ``cnn.state_dict()`` keys (wrap it as ``{'model': ...}`` to get the
    reference's ``.pkl`` payload). A ``torch.compile`` wrapper's ``_orig_mod.`` prefix is dropped."""
    return strip_compile_prefix(state_dict)


# ----------------------------------------------------------------------------------------------- load
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


# --------------------------------------------------------------------------------------------- export
def export_reference_checkpoint(payload: dict[str, Any]) -> dict[str, Any]:
    """A fastkd run checkpoint -> the object the reference script for its method saves (docs/compat.md).

    online-KD family: ``{'teacher_model': sd, 'student_model': sd}`` (the save format commented out in
    train_space.py, unwrapped keys); EMA and dropout: ``{'model': sd}`` (what train_EMA.py / dropout/train.py
    write; EMA writes the raw model, docs/semantics.md §6); self KD: ``net.state_dict()`` of the DataParallel
    wrapper.
    """
    learners = payload.get("learners")
    config = payload.get("config")
    if not isinstance(learners, dict) or not isinstance(config, dict) or not all(
            isinstance(state, dict) and isinstance(state.get("model"), dict) for state in learners.values()):
        raise CompatError("not a fastkd run checkpoint (no learners/config); pass a run's last.pt or best.pt")
    method = config.get("method")
    family = get_method(method).family if method in method_names() else None
    models = {name: strip_compile_prefix(state["model"]) for name, state in learners.items()}
    if family == "online_kd":
        return {f"{name}_model": sd for name, sd in models.items()}
    if len(models) != 1:
        raise CompatError(f"method {method!r}: expected one trained network, found {', '.join(models)}")
    (sd,) = models.values()
    if family == "self_kd":
        return selfkd_to_reference(sd, data_parallel=True)
    if family == "dropout":
        return {"model": dropout_to_reference(sd)}
    if family == "ema":
        return {"model": sd}
    raise CompatError(f"method {method!r} has no reference checkpoint format")
