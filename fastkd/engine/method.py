"""What a method is to the engine, which drives it knowing none by name: its plan, the models it builds, a
per-iteration schedule of steps, what to evaluate, its counters and state. Implementations live in
`fastkd.methods` and register their names in the method table (`fastkd.config.methods`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Protocol

import torch
import torch.nn as nn

from ..config.methods import get_method
from ..errors import ConfigError
from ..models.vit import VIT_MODELS

if TYPE_CHECKING:
    from ..config import ExperimentConfig
    from .steps import Batch, StepContext


class Iteration(Protocol):
    epoch: int
    step: int
    """1-based global training iteration g."""
    indices: torch.Tensor
    seed: int


class Plan(Protocol):
    """What the method will do, computed before training; `fastkd plan` prints `as_dict()` and the notes."""

    method: str
    semantics: str
    iters_per_epoch: int
    total_epochs: int
    notes: list[str]

    def as_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class OptimizerGroup:
    """One optimizer over `param_groups` for the learners named (shared when several, as the ViT reference's one
    AdamW over teacher and student: the first leads the per-epoch LR schedule)."""

    learners: tuple[str, ...]
    param_groups: list[dict]
    schedule_every_epoch: bool = False
    """Advance the LR at every epoch end even without a step (a student whose replays may skip an epoch)."""


class Method:
    """Base class: subclasses implement `from_config`, `build_models` and `run_iteration`; the rest has defaults."""

    plan: Plan

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, iters_per_epoch: int) -> Method:
        """The method with its plan for a config, given L (batches per epoch)."""
        raise NotImplementedError

    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        raise NotImplementedError

    def train_recipe(self, dataset: str) -> str:
        """Augmentation recipe in fastkd.pipelines for `data.augment: default`: the online-KD recipe, and crop 64 +
        flip on Tiny-ImageNet as every reference script (docs/semantics.md §2.1)."""
        return "tiny_online_kd" if dataset == "tiny_imagenet" else "online_kd"

    def normalization(self, dataset: str) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
        """(mean, std) the pipelines normalise with instead of the data set's own statistics, or None to keep
        them (self KD's reference normalises CIFAR-100 with CIFAR-10 statistics, docs/semantics.md §2.2)."""
        return None

    def optimizer_groups(self, models: dict[str, nn.Module]) -> list[OptimizerGroup]:
        """Optimizers other than the default one per model over all its parameters (the config's optim section,
        the learners' names and prepared models given); learners not named keep the default."""
        return []

    def attach(self, ctx: StepContext) -> None:
        """Called once the learners exist (e.g. to build an EMA copy)."""

    def run_iteration(self, it: Iteration, ctx: StepContext) -> None:
        raise NotImplementedError

    def finish(self, ctx: StepContext) -> None:
        """Called after the last training iteration, before the final evaluation."""

    def phase(self, epoch: int) -> str:
        """A label of what trains in this epoch (logged in metrics.csv)."""
        return "train"

    def main_model(self, epoch: int) -> str:
        """The evaluated output whose best top-1 decides `best.pt`."""
        return "student"

    @contextlib.contextmanager
    def eval_context(self, ctx: StepContext) -> Iterator[None]:
        """Models in eval mode for evaluation, restored afterwards."""
        modes = {name: learner.model.training for name, learner in ctx.learners.items()}
        for learner in ctx.learners.values():
            learner.model.eval()
        try:
            yield
        finally:
            for name, learner in ctx.learners.items():
                learner.model.train(modes[name])

    def eval_outputs(self, ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
        """Named logits to score on a test batch; default: the second output of every learner."""
        return {name: learner.forward(batch)[1] for name, learner in ctx.learners.items()}

    def counters(self) -> dict[str, int]:
        """Event counts logged per epoch in metrics.csv and in summary.json (e.g. replay events)."""
        return {}

    def replay_peak_bytes(self) -> int | None:
        """The most bytes the method's replay log has held at once (`fastkd bench` reports it as the replay buffer);
        None: the method keeps no replay log."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def build_method(cfg: ExperimentConfig, iters_per_epoch: int) -> Method:
    """The config's method with its plan, given L (batches per epoch), from the method table: the engine runs
    whichever implementation the layer that builds the run has registered (`fastkd.methods` the built-in ones)."""
    spec = get_method(cfg.method)
    vits = [f"model.{key}={getattr(cfg.model, key)}" for key in spec.model_keys
            if spec.family != "vit_kd" and getattr(cfg.model, key, None) in VIT_MODELS]
    if vits:
        raise ConfigError(f"{vits[0]}: a vision transformer, but {cfg.method} trains CNNs with feature heads (the "
                          "reference's ResNets, MobileNets, ShuffleNets); train ViTs with vit_base, vit_online_kd, "
                          "vit_offline_kd or vit_spaced_kd")
    if iters_per_epoch < 1:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} with data.drop_last=true: the batch is larger than "
                          "the training set, so an epoch would have no batch; lower data.batch_size or set "
                          "data.drop_last=false")
    return spec.implementation().from_config(cfg, iters_per_epoch)
