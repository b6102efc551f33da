"""What a method is to the engine: models to build, a per-iteration schedule of step events, what to evaluate."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator, Protocol

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from ..config import ExperimentConfig
    from ..engine.steps import Learner


class Iteration(Protocol):
    epoch: int
    step: int
    """1-based global training iteration g."""
    indices: torch.Tensor
    seed: int


class Engine(Protocol):
    """The primitives the trainer hands a method (see fastkd.engine.trainer.Trainer)."""

    cfg: ExperimentConfig
    learners: dict[str, Learner]

    def batch(self, indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]: ...
    def record(self, kind: str, **losses: torch.Tensor) -> None: ...


class Plan(Protocol):
    method: str
    iters_per_epoch: int
    total_epochs: int
    notes: list[str]

    def as_dict(self) -> dict[str, Any]: ...


class Method:
    """Base class: subclasses set `plan` and implement `build_models` and `run_iteration`."""

    plan: Plan
    train_recipe: str = "online_kd"
    """Augmentation recipe name in fastkd.pipelines for `data.augment: default` on 32x32 data sets."""

    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        raise NotImplementedError

    def normalization(self, dataset: str) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
        """(mean, std) the pipelines normalise with instead of the data set's own statistics, or None to keep
        them (self KD's reference normalises CIFAR-100 with CIFAR-10 statistics, spec 1.2)."""
        return None

    def attach(self, eng: Engine) -> None:
        """Called once the learners exist (e.g. to build an EMA copy)."""

    def run_iteration(self, it: Iteration, eng: Engine) -> None:
        raise NotImplementedError

    def finish(self, eng: Engine) -> None:
        """Called after the last training iteration, before the final evaluation."""

    def phase(self, epoch: int) -> str:
        """A label of what trains in this epoch (logged in metrics.csv)."""
        return "train"

    def main_model(self, epoch: int) -> str:
        """The evaluated output whose best top-1 decides `best.pt`."""
        return "student"

    @contextlib.contextmanager
    def eval_context(self, eng: Engine) -> Iterator[None]:
        """Models in eval mode for evaluation, restored afterwards."""
        modes = {name: learner.model.training for name, learner in eng.learners.items()}
        for learner in eng.learners.values():
            learner.model.eval()
        try:
            yield
        finally:
            for name, learner in eng.learners.items():
                learner.model.train(modes[name])

    def eval_outputs(self, eng: Engine, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named logits to score on a test batch; default: the second output of every learner."""
        return {name: learner.forward(x)[1] for name, learner in eng.learners.items()}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def family_model_name(name: str, prefix: str) -> str:
    """The registered model of a method's family for a configured name: `resnet18` -> `selfkd_resnet18` with
    prefix `selfkd_`; a name that already carries the prefix is kept. Unknown names raise listing the family."""
    from ..config import ConfigError
    from ..models import is_model, list_models

    full = name if name.startswith(prefix) else prefix + name
    if not is_model(full):
        choices = ", ".join(n.removeprefix(prefix) for n in list_models(prefix + "*"))
        raise ConfigError(f"model.student: {name!r} has no {prefix.rstrip('_')} variant; choose one of: {choices}")
    return full
