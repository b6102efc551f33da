"""State-dict key maps between fastkd's models and the reference code's checkpoints, in both directions.

fastkd's models use the reference's parameter names (docs/semantics.md §3), so the maps only add or remove the
wrappers the reference scripts put around their models: DataParallel's ``module.``, the online-KD scripts'
``{'teacher_model': .., 'student_model': ..}`` pair, the ``{'model': sd}`` files of train_EMA.py and
dropout/train.py, and self KD's adaptation layers, which live on the DataParallel wrapper. Tables:
docs/compat.md (Checkpoints) and docs/checkpoint-keys-selfkd-dropout.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..config.methods import get_method, method_names
from ..engine.checkpoint import load_checkpoint
from ..errors import CheckpointError
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
    """A dropout/train.py checkpoint -> fastkd ``DropoutResNet`` (or ``WideResNet``) keys.

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


# ------------------------------------------------------------------------------------ pycls ViTs (.pyth)
PYCLS_STATE_KEY = "model_state"
"""Where a pycls checkpoint (``model_epoch_XXXX.pyth``, ``model.pyth``) keeps the model; with the reference's
DistillationWrapper that is the student alone."""

KeyRename = tuple[str, Callable[[re.Match], str] | str]


def _shifted(template: str, offset: int) -> Callable[[re.Match], str]:
    """A regex replacement that writes ``template`` with the matched stage index moved by ``offset``."""
    return lambda match: template.format(int(match.group(1)) + offset)


_DEIT_RENAMES: tuple[KeyRename, ...] = (
    (r"^patch_embed\.projection\.", "patch_embed.proj."), (r"^layers\.", "blocks."),
    (r"\.attn\.qkv_transform\.", ".attn.qkv."), (r"\.attn\.projection\.", ".attn.proj."),
    (r"^distill_token$", "dist_token"), (r"^distill_head\.", "head_dist."),
)
_DEIT_RENAMES_BACK: tuple[KeyRename, ...] = (
    (r"^patch_embed\.proj\.", "patch_embed.projection."), (r"^blocks\.", "layers."),
    (r"\.attn\.qkv\.", ".attn.qkv_transform."), (r"\.attn\.proj\.", ".attn.projection."),
    (r"^dist_token$", "distill_token"), (r"^head_dist\.", "distill_head."),
)
PYCLS_VIT_RENAMES: dict[str, tuple[tuple[KeyRename, ...], tuple[KeyRename, ...]]] = {
    "deit_tiny": (_DEIT_RENAMES, _DEIT_RENAMES_BACK),
    "pit_ti": (
        ((r"^pools\.(\d+)\.", _shifted("transformers.{}.pool.", 1)), (r"\.attn\.qkv_transform\.", ".attn.qkv."),
         (r"\.attn\.projection\.", ".attn.proj.")),
        ((r"^transformers\.(\d+)\.pool\.", _shifted("pools.{}.", -1)), (r"\.attn\.qkv\.", ".attn.qkv_transform."),
         (r"\.attn\.proj\.", ".attn.projection.")),
    ),
    "pvt_v2_b0": (
        ((r"^patch_embed1\.", "patch_embed."), (r"^patch_embed([2-4])\.", _shifted("stages.{}.downsample.", -1)),
         (r"^block([1-4])\.", _shifted("stages.{}.blocks.", -1)), (r"^norm([1-4])\.", _shifted("stages.{}.norm.", -1)),
         (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv.")),
        ((r"^patch_embed\.", "patch_embed1."), (r"^stages\.(\d)\.downsample\.", _shifted("patch_embed{}.", 1)),
         (r"^stages\.(\d)\.blocks\.", _shifted("block{}.", 1)), (r"^stages\.(\d)\.norm\.", _shifted("norm{}.", 1)),
         (r"\.mlp\.dwconv\.", ".mlp.dwconv.dwconv.")),
    ),
    # written in fastkd under the reference's own names
    "pvt_tiny": ((), ()), "t2t_vit_7": ((), ()), "t2t_vit_14": ((), ()), "cvt_13": ((), ()), "convit_tiny": ((), ()),
}
"""Per architecture: (reference -> fastkd, fastkd -> reference) regex renames, applied in order to every key.
The models from timm (DeiT, PiT, PVTv2) use timm's names; docs/compat.md lists the pairs."""


def _renamed(state_dict: StateDict, renames: tuple[KeyRename, ...]) -> StateDict:
    mapped = {}
    for key, value in state_dict.items():
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        mapped[key] = value
    return mapped


def pycls_vit_from_reference(state_dict: StateDict, architecture: str) -> StateDict:
    """A pycls ``model_state`` (reference key names, optionally ``module.``-prefixed) -> fastkd keys."""
    return _renamed(strip_module_prefix(state_dict), PYCLS_VIT_RENAMES[architecture][0])


def pycls_vit_to_reference(state_dict: StateDict, architecture: str) -> StateDict:
    """fastkd ViT keys -> the reference's ``model_state`` keys (a ``torch.compile`` prefix is dropped)."""
    return _renamed(strip_compile_prefix(state_dict), PYCLS_VIT_RENAMES[architecture][1])


def pycls_checkpoint(state_dict: StateDict, architecture: str, epoch: int) -> dict[str, Any]:
    """The ``.pyth`` payload pycls' ``load_checkpoint`` reads as TRAIN.WEIGHTS / TEST.WEIGHTS / TEACHER_WEIGHTS:
    the student in reference keys as both model and EMA state, errors at 100 so ``model_state`` is chosen."""
    reference = pycls_vit_to_reference(state_dict, architecture)
    return {"epoch": epoch, "test_err": 100.0, "ema_err": 100.0, PYCLS_STATE_KEY: reference,
            "ema_state": dict(reference)}


def _pycls_sources(payload: dict[str, Any], models: dict[str, nn.Module]) -> dict[str, StateDict]:
    """The models a pycls ``model_state`` fits under some architecture's renames: the student alone when there is
    one (pycls loads TRAIN.WEIGHTS into its DistillationWrapper, whose state is the student's), else every model
    it fits."""
    state = {k: v for k, v in payload[PYCLS_STATE_KEY].items() if isinstance(v, torch.Tensor)}
    sources = {}
    for name, model in models.items():
        if "student" in models and name != "student":
            continue
        own = set(model.state_dict())
        for architecture in PYCLS_VIT_RENAMES:
            mapped = pycls_vit_from_reference(state, architecture)
            if set(mapped) == own:
                sources[name] = mapped
                break
    return sources


# ----------------------------------------------------------------------------------------------- load
def init_weights(path: str | Path, models: dict[str, nn.Module]) -> list[str]:
    """Load teacher/student weights from a fastkd checkpoint or a reference-layout state_dict.

    Accepted: a fastkd run checkpoint (``learners.<name>.model``); a dict ``{"teacher": sd, "student": sd}`` or
    the reference's ``{"teacher_model": sd, "student_model": sd}``; the ``{"model": sd}`` files train_EMA.py and
    dropout/train.py write; a pycls ViT ``.pyth`` (its ``model_state``: into the student, as pycls does); or
    one state_dict (optionally DataParallel-prefixed ``module.``) matching a model, or a bare backbone, which is loaded into every ``net`` it fits. A state lacking only the self-KD adaptation
    layers loads with fresh ones. Returns the names of the models loaded. Key mapping: docs/compat.md.
    """
    payload = load_checkpoint(path)
    if set(payload) == {"model"} and isinstance(payload["model"], dict):
        payload = payload["model"]
    if "learners" in payload:
        sources = {n: payload["learners"][n]["model"] for n in models if n in payload["learners"]}
    elif isinstance(payload.get(PYCLS_STATE_KEY), dict):
        sources = _pycls_sources(payload, models)
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
    wrapper; a ViT student: the pycls ``.pyth`` payload (:func:`pycls_checkpoint`).
    """
    learners = payload.get("learners")
    config = payload.get("config")
    if not isinstance(learners, dict) or not isinstance(config, dict) or not all(
            isinstance(state, dict) and isinstance(state.get("model"), dict) for state in learners.values()):
        raise CompatError("not a fastkd run checkpoint (no learners/config); pass a run's last.pt or best.pt")
    method = config.get("method")
    family = get_method(method).family if method in method_names() else None
    models = {name: strip_compile_prefix(state["model"]) for name, state in learners.items()}
    student = config.get("model", {}).get("student") if isinstance(config.get("model"), dict) else None
    if student in PYCLS_VIT_RENAMES:
        if "student" not in models:
            raise CompatError(f"method {method!r}: the checkpoint holds no student ({', '.join(models)})")
        return pycls_checkpoint(models["student"], student, int(payload.get("epoch", 0)))
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
