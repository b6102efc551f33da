"""Device, precision, compile and seeding decisions, made once per run from the config."""

from __future__ import annotations

import contextlib
import copy
import os
import random
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..config import TrainConfig


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None
    """Autocast dtype, or None for fp32."""
    compile: bool
    channels_last: bool | None
    """None until resolved (`auto` on CPU is measured once the models exist: see resolve_channels_last)."""
    param_dtype: torch.dtype = torch.float32
    """Model/data dtype: float32, or float64 for exact comparisons."""

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

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """The memory format the models were converted to."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def describe(self) -> str:
        amp = str(self.amp_dtype or self.param_dtype).removeprefix("torch.")
        return (f"device={self.device} precision={amp} compile={'on' if self.compile else 'off'} "
                f"channels_last={'on' if self.channels_last else 'off'} threads={torch.get_num_threads()}")


def build_runtime(cfg: TrainConfig) -> Runtime:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device: cuda was asked for but no CUDA device is visible; use train.device=cpu")
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    on_cuda = device.type == "cuda"
    amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16,
           "auto": torch.bfloat16 if on_cuda else None}[cfg.amp]
    if amp == torch.float16 and not on_cuda:
        raise ValueError("train.amp: fp16 autocast needs CUDA; use train.amp=off (or bf16) on CPU")
    compile_ = {"on": True, "off": False, "auto": on_cuda}[cfg.compile]
    if cfg.float64 and cfg.amp in ("bf16", "fp16"):
        raise ValueError("train.float64 runs everything in float64; it cannot be combined with train.amp=" + cfg.amp)
    if cfg.float64:
        amp = None
    channels_last = cfg.channels_last
    if channels_last == "auto":
        # float64 has no oneDNN kernels on CPU, so channels_last only adds layout conversions there.
        channels_last = True if on_cuda else (False if cfg.deterministic or cfg.float64 else None)
    return Runtime(device=device, amp_dtype=amp, compile=compile_, channels_last=channels_last,
                   param_dtype=torch.float64 if cfg.float64 else torch.float32)


def resolve_channels_last(runtime: Runtime, models: list[torch.nn.Module], image_shape: tuple[int, int, int],
                          batch: int = 16) -> Runtime:
    """Pick the faster memory layout by timing forward+backward of copies of the models (global RNG untouched)."""
    if runtime.channels_last is not None:
        return runtime
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *image_shape, generator=gen).to(runtime.device, runtime.param_dtype)
    layouts = (torch.contiguous_format, torch.channels_last)
    clones = {layout: [copy.deepcopy(m).to(device=runtime.device, dtype=runtime.param_dtype, memory_format=layout)
                       for m in models] for layout in layouts}
    seconds = {layout: float("inf") for layout in layouts}
    for round_ in range(3):  # interleaved, best of 2 after a warm-up round: load spikes hit both layouts alike
        for layout in layouts:
            inp = x.contiguous(memory_format=layout)
            start = time.perf_counter()
            for model in clones[layout]:
                sum(t.float().sum() for t in _tensors(model(inp))).backward()
            if round_:
                seconds[layout] = min(seconds[layout], time.perf_counter() - start)
    return replace(runtime, channels_last=seconds[torch.channels_last] < seconds[torch.contiguous_format])


def _tensors(out) -> list[torch.Tensor]:
    """Every tensor in a model output (a tensor, a (feature, logits) tuple, or lists of exits)."""
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for item in out for t in _tensors(item)]


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
