"""The fastkd side of a benchmark: the config a preset gives a method, and a Trainer driven one epoch at a time."""

from __future__ import annotations

from pathlib import Path

from ..config import load_config
from ..engine.trainer import Trainer
from .presets import BenchMethod, Scale


def fastkd_config(method: BenchMethod, scale: Scale, device: str, data_root: Path, output_dir: Path, epochs: int,
                  extra: list[str] = ()):
    """The fastkd side: reference semantics, default fast path for the device, no evaluation, no progress bar, no
    checkpoints (the reference loops write none)."""
    return load_config(None, [
        f"name={method.name}", f"output_dir={output_dir}", "semantics=reference", "seed=0",
        "data.dataset=cifar100", f"data.root={data_root}", f"data.batch_size={scale.batch_size}",
        f"train.device={device}", f"train.epochs={epochs}", f"train.eval_every={epochs + 1}",
        "train.progress=false", "train.tensorboard=false", "train.checkpoints=false",
        *method.fastkd_overrides(scale), *extra,
    ])


class FastkdRounds:
    """Drives a Trainer one epoch at a time through `fit(max_steps=...)`."""

    def __init__(self, trainer: Trainer, iters_per_epoch: int):
        self.trainer = trainer
        self.iters_per_epoch = iters_per_epoch

    def train_epoch(self) -> None:
        self.trainer.fit(max_steps=self.trainer.global_step + self.iters_per_epoch)
