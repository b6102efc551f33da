"""Step primitives every method is built from: a model with its optimizer (`Learner`), the one training step
(`train_step`: forward -> loss -> optimizer step -> record) and the narrow context a method's schedule runs in.

Nothing here knows a method; nothing here reads a tensor value on the host.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Protocol, Union

import torch
import torch.nn as nn
from timm.scheduler import CosineLRScheduler
from torch.profiler import record_function

from ..config import OptimConfig
from ..kernels import cross_entropy
from ..kernels.batch_norm import use_row_batchnorm
from ..kernels.pointwise_conv import subsample_strided_pointwise_convs
from ..kernels.global_batch import GlobalBatchOp, Shard, global_batch_ops
from . import distributed
from .nonfinite import SkipNonFinite
from .runtime import Runtime


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Fused kernels on every device: one pass over all parameters per step. On the CPU, too, torch's fused SGD
    and AdamW are 3-4x faster than foreach (ResNet-18 SGD 5.6 vs 24 ms, DeiT-Ti AdamW 4.0 vs 16 ms per step on 2
    cores) and equal it to an ulp in float64 (SGD bit for bit)."""
    if cfg.name == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                    weight_decay=cfg.weight_decay, fused=True)
        if cfg.momentum:
            _zero_missing_momentum(optimizer)
            optimizer.register_load_state_dict_post_hook(_zero_missing_momentum)
        return optimizer
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, fused=True)


def _zero_missing_momentum(optimizer: torch.optim.Optimizer) -> None:
    """Give every parameter of a fused SGD a zero momentum buffer up front. Fused SGD takes one first-step path
    for all buffers at once and fails when only some exist, which happens whenever parameters start receiving
    gradients at different steps (self KD's shallow exits train only at KD events). With dampening 0 a zero
    buffer gives the first step's buffer = grad exactly, as torch's lazy initialisation does."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state[param]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)


def decay_param_groups(models: list[nn.Module], weight_decay: float,
                       no_decay_names: tuple[str, ...] = ()) -> list[dict]:
    """The ViT trainer's two groups (timm/pycls rule): 1-D parameters, biases and parameters whose name contains
    one of `no_decay_names` get no weight decay; frozen parameters are left out."""
    decay, no_decay = [], []
    for model in models:
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            skip = param.ndim <= 1 or name.endswith(".bias") or any(token in name for token in no_decay_names)
            (no_decay if skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class EpochWarmupCosine:
    """timm's CosineLRScheduler stepped once per epoch (the ViT trainer's): lr(e) rises linearly from
    warmup_factor*lr over `warmup_epochs`, then follows a cosine from lr to min_lr over all `epochs`. The LR of
    epoch 0 is set at construction; `step()` moves to the next epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig, epochs: int):
        self.epoch = 0
        self.timm = CosineLRScheduler(optimizer, t_initial=epochs, lr_min=cfg.min_lr, warmup_t=cfg.warmup_epochs,
                                      warmup_lr_init=cfg.warmup_factor * cfg.lr)

    def step(self) -> None:
        self.epoch += 1
        self.timm.step(self.epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "timm": self.timm.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self.timm.load_state_dict(state["timm"])


class FollowerScheduler:
    """The schedule slot of a learner whose optimizer another learner's scheduler drives (a shared optimizer)."""

    def step(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


SCHEDULES_OVER_EPOCHS = frozenset({"cosine", "warmup_cosine"})
"""The optim.schedule values whose LR curve is drawn over train.epochs, so a resumed run cannot change it."""


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, epochs: int):
    """Per-epoch LR schedule (the reference's online KD keeps it constant)."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if cfg.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.gamma)
    if cfg.schedule == "warmup_cosine":
        return EpochWarmupCosine(optimizer, cfg, epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


class Batch(NamedTuple):
    """A training or evaluation batch as this process holds it: the augmented rows of the global batch (indices,
    seed) it works on. The Learner hands `shard` to the model's global-batch ops; `train_step` weights the loss
    by `share`."""

    x: torch.Tensor
    y: torch.Tensor
    rows: slice | None
    """This process's rows of the global batch under torchrun; None: one process, every row."""
    size: int
    """Rows of the global batch."""

    @property
    def shard(self) -> Shard | None:
        return None if self.rows is None else (self.rows, self.size)

    @property
    def share(self) -> float | None:
        """B_r / B: the weight of this process's per-sample means in the global loss (None: one process)."""
        return None if self.rows is None else (self.rows.stop - self.rows.start) / self.size


@dataclass
class Learner:
    """A model with its optimizer: `forward` (possibly compiled) and `step(loss)`."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    runtime: Runtime
    stepped: bool = False
    """Whether the optimizer stepped since the last scheduler step (offline KD's idle phase must not advance it)."""
    skip_nonfinite: SkipNonFinite | None = None
    """Set for `train.nonfinite: skip`: a step whose loss is NaN/inf changes nothing."""
    schedule_every_epoch: bool = False
    """Advance the LR at every epoch end, stepped or not (a student whose replays may skip an epoch)."""
    _global_ops: weakref.WeakKeyDictionary[nn.Module, list[GlobalBatchOp]] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False)
    """Per module run: its ops that draw over the global batch."""

    def forward(self, batch: Batch, via: Callable[[torch.Tensor], Any] | None = None):
        """The model's forward on the batch, or `via` (another forward of the model, e.g. one exit, or a side module
        such as its EMA copy), under the run's autocast; the module's global-batch ops get the batch's shard."""
        module = via if isinstance(via, nn.Module) else self.model
        ops = self._global_ops.get(module)
        if ops is None:
            ops = self._global_ops[module] = global_batch_ops(module)
        for op in ops:
            op.shard = batch.shard
        with record_function("fastkd.forward"), self.runtime.autocast():
            return (via or self.model)(batch.x)

    def autocast(self):
        """The run's autocast, for extra modules a loss runs on this learner's outputs (e.g. adaptation layers)."""
        return self.runtime.autocast()

    def compiled(self, fn: Callable) -> Callable:
        """`fn` compiled when the run compiles this learner's model: a function is wrapped by torch.compile, a
        module (e.g. an EMA copy: a deep copy of a compiled module comes back uncompiled) is compiled in place
        so its state_dict keys stay unprefixed."""
        if not self.runtime.compile:
            return fn
        if isinstance(fn, nn.Module):
            fn.compile(**self.runtime.compile_options)
            return fn
        return torch.compile(fn, **self.runtime.compile_options)

    def step(self, loss: torch.Tensor) -> None:
        """zero_grad(set_to_none) -> backward -> optimizer step (through the GradScaler under fp16)."""
        if self.skip_nonfinite is not None:
            self.skip_nonfinite.begin()
        self.optimizer.zero_grad(set_to_none=True)
        with record_function("fastkd.backward"):
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        with record_function("fastkd.all_reduce"):  # every parameter this optimizer steps (it may be shared)
            distributed.sum_gradients(p for group in self.optimizer.param_groups for p in group["params"])
        with record_function("fastkd.optimizer"):
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
        if self.skip_nonfinite is not None:
            self.skip_nonfinite.end(loss)
        self.stepped = True

    @property
    def lr(self) -> float:
        """The learning rate the optimizer's next step uses (every param group shares it)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def end_epoch(self) -> None:
        """Advance the per-epoch LR schedule if this learner trained in the epoch."""
        if self.stepped or self.schedule_every_epoch:
            self.scheduler.step()
            self.stepped = False

    @torch.no_grad()
    def no_grad_forward(self, batch: Batch, train_mode: bool):
        """Outputs without gradients (e.g. teacher targets); train mode uses batch BN statistics (and updates the
        running statistics), eval mode the running statistics; the model's mode is restored afterwards."""
        was_training = self.model.training
        self.model.train(train_mode)
        outputs = self.forward(batch)
        self.model.train(was_training)
        return outputs

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


def build_learner(name: str, model: nn.Module, optim_cfg: OptimConfig, epochs: int, runtime: Runtime) -> Learner:
    model = model.to(device=runtime.device, dtype=runtime.param_dtype)
    if runtime.sync_bn:
        model = distributed.convert_batchnorm(model, runtime.device.type == "cuda")
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
        if runtime.device.type == "cpu":
            model = subsample_strided_pointwise_convs(model)  # oneDNN crashes on some of them (kernels/pointwise_conv.py)
            if not runtime.compile and not runtime.sync_bn:
                model = use_row_batchnorm(model)  # ATen's channels-last batch norm is slow at some widths on CPU
    optimizer = build_optimizer(model.parameters(), optim_cfg)
    if runtime.compile:
        model.compile(**runtime.compile_options)  # in place: state_dict keys stay those of the reference layout
    scaler = torch.amp.GradScaler(runtime.device.type) if runtime.needs_grad_scaler else None
    return Learner(name, model, optimizer, build_scheduler(optimizer, optim_cfg, epochs), scaler, runtime)


def set_optimizer(learners: list[Learner], param_groups: list[dict], cfg: OptimConfig, epochs: int) -> None:
    """Give `learners` one new optimizer over `param_groups` and its schedule. With several learners it is shared
    (as the ViT reference's one AdamW over teacher and student): a step through any of them updates every
    parameter that has a gradient, and the first learner's end of epoch advances the LR of all."""
    optimizer = build_optimizer(param_groups, cfg)
    scheduler = build_scheduler(optimizer, cfg, epochs)
    for position, learner in enumerate(learners):
        learner.optimizer = optimizer
        learner.scheduler = scheduler if position == 0 else FollowerScheduler()


def guard_nonfinite_steps(learners: list[Learner]) -> None:
    """`train.nonfinite: skip`: one guard per optimizer over every model it steps, so learners that share an
    optimizer (a step through either moves both) undo a non-finite step together."""
    by_optimizer: dict[int, list[Learner]] = {}
    for learner in learners:
        by_optimizer.setdefault(id(learner.optimizer), []).append(learner)
    for group in by_optimizer.values():
        guard = SkipNonFinite([learner.model for learner in group], group[0].optimizer)
        for learner in group:
            learner.skip_nonfinite = guard


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    with record_function("fastkd.loss"):
        return cross_entropy(logits, labels)


LossFn = Callable[[Any, torch.Tensor], Union[torch.Tensor, tuple[torch.Tensor, dict[str, torch.Tensor]]]]
"""(model outputs, labels) -> the loss, or (loss, named parts to record next to it)."""


class Recorder(Protocol):
    def __call__(self, kind: str, lr: float, **losses: torch.Tensor) -> None: ...


class StepResult(NamedTuple):
    loss: torch.Tensor
    outputs: Any
    """The model outputs the loss was computed from (still attached to the graph)."""
    parts: dict[str, torch.Tensor]


def train_step(learner: Learner, batch: Batch, loss_fn: LossFn, record: Recorder, kind: str | None = None,
               via: Callable[[torch.Tensor], Any] | None = None) -> StepResult:
    """The one training step every method takes: forward (or `via`) -> loss (profiled as fastkd.loss) ->
    optimizer step -> record `loss` and the parts as `train_<kind>_<name>` (kind defaults to the learner's name),
    with the LR the step used."""
    lr = learner.lr
    outputs = learner.forward(batch, via)
    with record_function("fastkd.loss"):
        value = loss_fn(outputs, batch.y)
    loss, parts = value if isinstance(value, tuple) else (value, {})
    share = batch.share
    if share is not None:  # this rank's part of the global loss (engine/distributed.py)
        loss, parts = loss * share, {name: part * share for name, part in parts.items()}
    learner.step(loss)
    record(kind or learner.name, lr, loss=loss, **parts)
    return StepResult(loss, outputs, parts)


@dataclass(frozen=True)
class StepContext:
    """All a method's schedule gets from the engine: the learners, the replayable batch, the step and record."""

    learners: dict[str, Learner]
    batch: Callable[[torch.Tensor, int], Batch]
    """(indices, seed) -> the augmented Batch: a pure function, so a replay regenerates the same pixels."""
    record: Recorder
    """Accumulate named losses of a step on the device (no host sync), with the LR the step used."""
    train_size: int = 0
    """N, the number of training samples: for a method that draws batches of its own (the ViT reference's
    independent replay loader)."""

    def train_step(self, learner: str, batch: Batch, loss_fn: LossFn, kind: str | None = None,
                   via: Callable[[torch.Tensor], Any] | None = None) -> StepResult:
        return train_step(self.learners[learner], batch, loss_fn, self.record, kind, via)
