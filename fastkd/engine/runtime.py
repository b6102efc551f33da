"""Device, precision, compile and seeding decisions, made once per run from the config."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..config import TrainConfig
from ..errors import ConfigError
from . import distributed


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None
    """Autocast dtype, or None for fp32."""
    compile: bool
    channels_last: bool | None
    """None until resolved (`auto` on CPU depends on the models' widths: see resolve_channels_last)."""
    param_dtype: torch.dtype = torch.float32
    """Model/data dtype: float32, or float64 for exact comparisons."""
    sync_bn: bool = False
    """Batch norm with global-batch statistics (several processes and train.sync_bn on/auto)."""
    compile_mode: str = "default"
    """torch.compile's mode (train.compile_mode)."""

    @property
    def compile_options(self) -> dict:
        """torch.compile's arguments. Shapes are static: each batch shape (the full and the last partial batch,
        train and eval) gets its own graph specialised to it, as CUDA graphs (`reduce-overhead`) need; a run has
        at most two batch shapes per mode, so the count stays bounded (tests/core/test_compile_clean.py)."""
        return {"dynamic": False, **({} if self.compile_mode == "default" else {"mode": self.compile_mode})}

    @property
    def input_dtype(self) -> torch.dtype:
        return self.amp_dtype or self.param_dtype

    @property
    def needs_grad_scaler(self) -> bool:
        return self.amp_dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def describe(self) -> str:
        amp = str(self.amp_dtype or self.param_dtype).removeprefix("torch.")
        compiled = ("on" if self.compile_mode == "default" else self.compile_mode) if self.compile else "off"
        return (f"device={self.device} precision={amp} compile={compiled} "
                f"channels_last={'on' if self.channels_last else 'off'} threads={torch.get_num_threads()}")


def build_runtime(cfg: TrainConfig) -> Runtime:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda was asked for but no CUDA device is visible; use train.device=cpu")
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if device.type == "cuda" and distributed.is_active():
        device = torch.device("cuda", distributed.local_rank())
    on_cuda = device.type == "cuda"
    amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16,
           "auto": torch.bfloat16 if on_cuda else None}[cfg.amp]
    if amp == torch.float16 and not on_cuda:
        raise ConfigError("train.amp: fp16 autocast needs CUDA; use train.amp=off (or bf16) on CPU")
    compile_ = {"on": True, "off": False, "auto": on_cuda}[cfg.compile]
    if cfg.float64 and cfg.amp in ("bf16", "fp16"):
        raise ConfigError("train.float64 runs everything in float64; it cannot be combined with train.amp=" + cfg.amp)
    if cfg.float64:
        amp = None
    channels_last = cfg.channels_last
    if channels_last == "auto":
        # float64 has no oneDNN kernels on CPU, so channels_last only adds layout conversions there.
        channels_last = True if on_cuda else (False if cfg.float64 else None)
    return Runtime(device=device, amp_dtype=amp, compile=compile_, channels_last=channels_last,
                   param_dtype=torch.float64 if cfg.float64 else torch.float32,
                   sync_bn=distributed.is_active() and cfg.sync_bn != "off", compile_mode=cfg.compile_mode)


CHANNELS_LAST_MIN_WIDTH = 8
"""`auto` on CPU turns channels_last on iff no conv or batch norm of the models is narrower than this. ResNet-18
forward+backward, 2 cores, AVX-512 Xeon, NCHW vs channels_last with kernels/batch_norm.py's row batch norm (which
build_learner swaps in on CPU: ATen's own channels-last batch norm is up to 7x slower over 8-45 channels):
channels_last 1.17-1.36x faster with the narrowest layer 8-32 channels wide (the self-KD ResNet: 1.17-1.20x), 1.03-1.40x
at 4. The earlier AMD EPYC measured native channels_last 1.0-1.3x faster at widths >= 8."""


def resolve_channels_last(runtime: Runtime, models: list[torch.nn.Module]) -> Runtime:
    """Settle `auto` from the models alone (never from timings), so the same config gives the same layout on every
    run; the trainer writes the result into the run's config, which resume and evaluation then reuse."""
    if runtime.channels_last is not None:
        return runtime
    return replace(runtime, channels_last=narrowest_width(models) >= CHANNELS_LAST_MIN_WIDTH)


def narrowest_width(models: list[torch.nn.Module]) -> float:
    """The fewest output channels of any 2-d convolution or batch norm in `models` (inf if they have none)."""
    widths = [m.out_channels if isinstance(m, torch.nn.Conv2d) else m.num_features
              for model in models for m in model.modules()
              if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
    return min(widths, default=float("inf"))


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def rng_state() -> dict:
    """Every RNG a training step may touch, in a form `torch.load(weights_only=True)` accepts."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np.random.get_state()[1].tolist(), int(np.random.get_state()[2])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    keys, pos = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(keys, dtype=np.uint32), pos, 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(obj):
    return tuple(_as_tuple(o) for o in obj) if isinstance(obj, (list, tuple)) else obj
