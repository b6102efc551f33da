"""Measurements of `fastkd bench`: one round's wall time and peak memory, a profiled round's time breakdown by
engine label, FLOP counts, and the machine's ceiling (a large matmul, a bare ResNet-18 forward+backward)."""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from ..kernels.batch_norm import use_row_batchnorm
from ..kernels.pointwise_conv import subsample_strided_pointwise_convs
from ..models import create_model
from .presets import NUM_CLASSES, Preset, Scale


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class RoundMeasure:
    seconds: float
    host_rss_peak_mb: float | None
    host_rss_growth_mb: float | None
    device_peak_mb: float | None
    device_growth_mb: float | None


def measure_round(run: Callable[[], Any], device: torch.device) -> RoundMeasure:
    """Wall time of one round (device synchronised at both ends) and its peak host/device memory."""
    mib = 1024 * 1024
    resettable = _reset_peak_rss()
    rss_start = _proc_status_kb("VmRSS")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        device_start = torch.cuda.memory_allocated(device)
    sync_device(device)
    start = time.perf_counter()
    run()
    sync_device(device)
    seconds = time.perf_counter() - start
    peak = _proc_status_kb("VmHWM") if resettable else None
    host_peak = peak / 1024 if peak is not None else None
    host_growth = max(0, peak - rss_start) / 1024 if peak is not None and rss_start is not None else None
    device_peak = device_growth = None
    if device.type == "cuda":
        device_peak = torch.cuda.max_memory_allocated(device) / mib
        device_growth = device_peak - device_start / mib
    return RoundMeasure(seconds, host_peak, host_growth, device_peak, device_growth)


BREAKDOWN_LABELS = {
    "fastkd.data": "data", "fastkd.forward": "forward", "fastkd.backward": "backward", "fastkd.loss": "loss",
    "fastkd.optimizer": "optimizer", "fastkd.ema": "ema", "fastkd.replay": "replay", "fastkd.host_sync": "host_sync",
}
CORE_WORK = ("forward", "backward", "optimizer")
"""Everything else (data, loss, EMA, replay bookkeeping, host syncs, untracked) counts as overhead."""


def breakdown_from_events(events, wall_seconds: float) -> dict[str, float]:
    """Share of the wall time spent in each engine label, exclusive of nested labels; `other` is the rest."""
    seconds = {part: 0.0 for part in BREAKDOWN_LABELS.values()}

    def nested_label_us(event) -> float:
        total = 0.0
        for child in event.cpu_children:
            total += child.time_range.elapsed_us() if child.name in BREAKDOWN_LABELS else nested_label_us(child)
        return total

    for event in events:
        if event.name in BREAKDOWN_LABELS and event.device_type == torch.autograd.DeviceType.CPU:
            seconds[BREAKDOWN_LABELS[event.name]] += (event.time_range.elapsed_us() - nested_label_us(event)) / 1e6
    shares = {part: s / wall_seconds for part, s in seconds.items()}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return shares


def profile_round(run: Callable[[], Any], device: torch.device) -> dict[str, float]:
    # Kineto logs an ERROR line about the missing GPU on CPU-only machines with a CUDA build of torch.
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        sync_device(device)
        start = time.perf_counter()
        run()
        sync_device(device)
        wall = time.perf_counter() - start
    return breakdown_from_events(prof.events(), wall)


def count_flops(run: Callable[[], Any]) -> float:
    """Matmul/conv FLOPs (forward and backward) of one eager round."""
    with FlopCounterMode(display=False) as counter:
        run()
    return float(counter.get_total_flops())


# ============================================================================================ ceiling
def ceiling_key(scale: Scale) -> str:
    return f"batch {scale.batch_size}, width/{math.sqrt(scale.width_divisor):g}"


def measure_ceiling(preset: Preset, device: torch.device, scales: list[Scale]) -> dict[str, Any]:
    """A large matmul, and per (batch, width) used by the methods a ResNet-18 forward+backward (no optimizer, no
    data) at every layout and thread count tried; the best of each is the ceiling fastkd is compared with."""
    on_cuda = device.type == "cuda"
    dtype = torch.bfloat16 if on_cuda else torch.float32
    n = preset.matmul_size
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    matmul_seconds = _best_time(lambda: a @ b, device, repeats=max(3, preset.ceiling_steps))
    del a, b
    resnets: dict[str, Any] = {}
    for scale in scales:
        if ceiling_key(scale) not in resnets:
            resnets[ceiling_key(scale)] = _resnet18_ceiling(scale, device, preset.ceiling_steps,
                                                            preset.sweep_threads)
    return {"matmul": {"size": n, "dtype": str(dtype).removeprefix("torch."), "gflops": 2 * n ** 3 / matmul_seconds / 1e9},
            "resnet18": resnets}


def _resnet18_ceiling(scale: Scale, device: torch.device, steps: int, sweep_threads: bool) -> dict[str, Any]:

    on_cuda = device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_cuda else contextlib.nullcontext
    sweep = sweep_threads and not on_cuda
    thread_options = sorted({1, os.cpu_count() or 1}) if sweep else [torch.get_num_threads()]
    original_threads = torch.get_num_threads()
    trials = []
    try:
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            model = create_model("resnet18", num_classes=NUM_CLASSES, downsample_factor=scale.width_divisor)
            model = model.to(device=device, memory_format=fmt).train()
            if channels_last and not on_cuda:  # as build_learner runs channels_last on CPU
                model = use_row_batchnorm(subsample_strided_pointwise_convs(model))
            x = torch.randn(scale.batch_size, 3, 32, 32, device=device).contiguous(memory_format=fmt)
            y = torch.randint(0, NUM_CLASSES, (scale.batch_size,), device=device)

            def step() -> None:
                model.zero_grad(set_to_none=True)
                with autocast():
                    logits = model(x)[1]
                torch.nn.functional.cross_entropy(logits.float(), y).backward()

            with FlopCounterMode(display=False) as counter:
                step()
            flops = float(counter.get_total_flops())
            for threads in thread_options:
                torch.set_num_threads(threads)
                seconds = _best_time(step, device, repeats=steps)
                trials.append({"channels_last": channels_last, "threads": threads, "seconds_per_step": seconds,
                               "images_per_s": scale.batch_size / seconds, "gflops": flops / seconds / 1e9})
    finally:
        torch.set_num_threads(original_threads)
    return {"batch_size": scale.batch_size, "width_divisor": scale.width_divisor,
            "precision": "bf16 autocast" if on_cuda else "fp32", "gflop_per_step": flops / 1e9,
            "trials": trials, "best": max(trials, key=lambda t: t["gflops"])}


def _best_time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Fastest of `repeats` timed calls after as many warm-up calls: the first steps of a new model pay for
    fresh memory pages and kernel selection (they measured up to 3x slower here)."""
    for _ in range(repeats):
        fn()
    sync_device(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync_device(device)
        best = min(best, time.perf_counter() - start)
    return best
