"""`fastkd bench`: fastkd against the reference implementation's training-loop structure, in one process.

Per method both sides train the same models (same initial weights) on the same synthetic CIFAR-100-layout data;
one round is one epoch. After a warm-up round each (fastkd's counts its FLOPs), the sides alternate fastkd,
reference, fastkd, reference ... for `--rounds`; one extra profiled fastkd round gives the time breakdown. The
machine's ceiling (a large matmul, a ResNet-18 forward+backward at the best layout and thread count) is measured
once. Results go to `--out`: results.json, results.md and PNG bar charts.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import math
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from . import __version__
from .config import METHODS, load_config

if TYPE_CHECKING:
    from .engine.trainer import Trainer

# =============================================================================================== presets
NUM_CLASSES = 100


class BenchOptionError(ValueError):
    """A bad `fastkd bench` option; the message is one line naming it and the valid choices."""


@dataclass(frozen=True)
class Scale:
    """How big one round (= one epoch) of a method is."""

    batch_size: int
    train_images: int
    """N: L = ceil(N / batch_size) iterations per epoch."""
    width_divisor: float = 1.0
    """downsample_factor d of the CIFAR ResNets (widths int(w / sqrt(d))); 1 = the reference's full width."""

    @property
    def iters_per_epoch(self) -> int:
        return -(-self.train_images // self.batch_size)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    device: str
    rounds: int
    warmup_rounds: int
    workers: int
    """DataLoader workers of the reference side (the reference scripts use 4)."""
    persistent_workers: bool
    """Keep the reference's workers between epochs. The reference re-spawns them every epoch; in epochs of a few
    iterations that start-up would weigh tens of times more than in a 391-iteration CIFAR-100 epoch."""
    scales: dict[str, Scale]
    test_images: int
    matmul_size: int
    ceiling_steps: int
    """Timed steps per setting of the ceiling measurements (the fastest counts)."""
    sweep_threads: bool = True
    """Try 1 and all CPU threads for the ResNet-18 ceiling (off: the current thread count only)."""


def _same_scale(scale: Scale, **overrides: Scale) -> dict[str, Scale]:
    scales = {name: scale for name in ("spaced_online_kd", "online_kd", "spaced_self_kd", "spaced_ema",
                                       "spaced_dropout")}
    scales.update(overrides)
    return scales


PRESETS: dict[str, Preset] = {
    "cpu-small": Preset(
        name="cpu-small",
        description="this 2-core CPU: ResNet-18s at width/4, batch 128, 5 iterations per epoch (EMA: 10; self KD: "
                    "width/8, batch 64); 3 rounds; < 10 min",
        device="cpu", rounds=3, warmup_rounds=1, workers=4, persistent_workers=True,
        scales=_same_scale(Scale(128, 640, 16.0), spaced_self_kd=Scale(64, 320, 64.0),
                           spaced_ema=Scale(128, 1280, 16.0)),
        test_images=100, matmul_size=2048, ceiling_steps=4,
    ),
    "gpu": Preset(
        name="gpu",
        description="full size on CUDA: CIFAR-100-sized epochs (50000 images, L = 391) of full-width ResNet-18s at "
                    "batch 128; 3 rounds",
        device="cuda", rounds=3, warmup_rounds=1, workers=4, persistent_workers=False,
        scales=_same_scale(Scale(128, 50000, 1.0)),
        test_images=1000, matmul_size=8192, ceiling_steps=20,
    ),
    "test": Preset(
        name="test",
        description="a seconds-long smoke run for the test suite (tiny nets, 1 round)",
        device="cpu", rounds=1, warmup_rounds=1, workers=2, persistent_workers=True,
        scales=_same_scale(Scale(16, 48, 64.0)),
        test_images=16, matmul_size=256, ceiling_steps=1, sweep_threads=False,
    ),
}


# ========================================================================================= method table
@dataclass(frozen=True)
class BenchMethod:
    """One row of the suite: a fastkd method, its reference script and the setting both sides run."""

    name: str
    """The fastkd method name (`method:` in a config)."""
    reference_script: str
    setting: str
    fastkd_overrides: Callable[[Scale], list[str]]
    has_replay_buffer: bool


# The settings of each row (the reference scripts' README values); the baselines read them back from the resolved
# fastkd config, so both sides always run the same setting.
ONLINE_KD = dict(lr=0.01, momentum=0.9, weight_decay=5e-4, temperature=3.0, alpha=0.3, beta=0.03)
SELF_KD = dict(interval=1.0, lr=0.01, temperature=3.0, lam=0.3, mu=0.03)
EMA = dict(interval=0.1, decay=0.999, lr=0.01)
DROPOUT = dict(drop=0.5, space=1.0, lr=0.01)
SPACED_ONLINE_KD_RATE = 1.0


def _online_kd_overrides(method: str, rate: float) -> Callable[[Scale], list[str]]:
    def overrides(scale: Scale) -> list[str]:
        return [f"method={method}", f"kd.interval={rate}", f"kd.temperature={ONLINE_KD['temperature']}",
                f"kd.alpha={ONLINE_KD['alpha']}", f"kd.beta={ONLINE_KD['beta']}", f"optim.lr={ONLINE_KD['lr']}",
                f"optim.momentum={ONLINE_KD['momentum']}", f"optim.weight_decay={ONLINE_KD['weight_decay']}",
                f"model.downsample_factor={scale.width_divisor}",
                f"model.student_downsample_factor={scale.width_divisor}"]
    return overrides


def _self_kd_overrides(scale: Scale) -> list[str]:
    return ["method=spaced_self_kd", f"kd.interval={SELF_KD['interval']}",
            f"kd.temperature={SELF_KD['temperature']}", f"kd.alpha={SELF_KD['lam']}", f"kd.beta={SELF_KD['mu']}",
            f"optim.lr={SELF_KD['lr']}", f"model.student_downsample_factor={scale.width_divisor}"]


def _ema_overrides(scale: Scale) -> list[str]:
    return ["method=spaced_ema", f"ema.interval={EMA['interval']}", f"ema.decay={EMA['decay']}",
            f"optim.lr={EMA['lr']}", f"model.student_downsample_factor={scale.width_divisor}"]


def _dropout_overrides(scale: Scale) -> list[str]:
    """SpacedDropout = inverted dropout (`dropout.op=standard`) at the sine rate; nesterov SGD as dropout/train.py."""
    return ["method=spaced_dropout", "dropout.op=standard", f"dropout.rate={DROPOUT['drop']}",
            f"dropout.space={DROPOUT['space']}", f"optim.lr={DROPOUT['lr']}", "optim.nesterov=true",
            f"model.student_downsample_factor={scale.width_divisor}"]


BENCH_METHODS: dict[str, BenchMethod] = {m.name: m for m in (
    BenchMethod("spaced_online_kd", "online_KD/train_space.py", f"s = {SPACED_ONLINE_KD_RATE} (I = L)",
                _online_kd_overrides("spaced_online_kd", SPACED_ONLINE_KD_RATE), True),
    BenchMethod("online_kd", "online_KD/train_space.py", "s = 0 (online)",
                _online_kd_overrides("online_kd", 0.0), True),
    BenchMethod("spaced_self_kd", "self_KD/train.py", f"s = {SELF_KD['interval']} (I = L)", _self_kd_overrides, True),
    BenchMethod("spaced_ema", "online_KD/train_EMA.py", f"s = {EMA['interval']}, d = {EMA['decay']}",
                _ema_overrides, False),
    BenchMethod("spaced_dropout", "dropout/train.py",
                f"SpacedDropout p = {DROPOUT['drop']}, space = {DROPOUT['space']}", _dropout_overrides, False),
)}


# ====================================================================================== synthetic data
def write_synthetic_cifar100(root: Path, train_images: int, test_images: int, seed: int = 0) -> Path:
    """CIFAR-100 pickles in torchvision's `cifar-100-python/` layout, filled with smooth random colour fields plus
    noise (so PIL ops and BN statistics see image-like values, not white noise); returns `root`."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train_images), ("test", test_images)):
        chunks = []
        for start in range(0, n, 4096):
            count = min(4096, n - start)
            coarse = torch.from_numpy(rng.integers(0, 256, size=(count, 3, 4, 4)).astype(np.float32))
            smooth = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
            noise = torch.from_numpy(rng.normal(0.0, 12.0, size=(count, 3, 32, 32)).astype(np.float32))
            chunks.append((smooth + noise).round().clamp(0, 255).to(torch.uint8).reshape(count, 3072).numpy())
        labels = rng.integers(0, NUM_CLASSES, size=n).tolist()
        entry = {"filenames": [f"synthetic_{i}.png" for i in range(n)], "batch_label": f"synthetic {split}",
                 "fine_labels": labels, "coarse_labels": [label // 5 for label in labels],
                 "data": np.concatenate(chunks)}
        with open(folder / split, "wb") as fh:
            pickle.dump(entry, fh, protocol=4)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"class_{i}" for i in range(NUM_CLASSES)],
                     "coarse_label_names": [f"superclass_{i}" for i in range(20)]}, fh, protocol=4)
    return root


# =============================================================================== the two sides of a row
def load_reference_style():
    """The reference-style loops live in the source checkout's `bench/reference_style/` (not installed)."""
    bench_dir = Path(__file__).resolve().parents[1] / "bench"
    if not (bench_dir / "reference_style" / "__init__.py").is_file():
        raise BenchOptionError(f"fastkd bench needs the source checkout's bench/reference_style/ (looked in {bench_dir}); "
                         "run it from a clone installed with `pip install -e .`")
    if str(bench_dir) not in sys.path:
        sys.path.insert(0, str(bench_dir))
    return importlib.import_module("reference_style")


def fastkd_config(method: BenchMethod, scale: Scale, device: str, data_root: Path, output_dir: Path, epochs: int,
                  extra: list[str] = ()):
    """The fastkd side: reference semantics, default fast path for the device, no evaluation, no progress bar."""
    return load_config(None, [
        f"name={method.name}", f"output_dir={output_dir}", "semantics=reference", "seed=0",
        "data.dataset=cifar100", f"data.root={data_root}", f"data.batch_size={scale.batch_size}",
        f"train.device={device}", f"train.epochs={epochs}", f"train.eval_every={epochs + 1}",
        "train.progress=false", "train.tensorboard=false",
        *method.fastkd_overrides(scale), *extra,
    ])


def _learner_state(trainer: Trainer, name: str | None) -> dict[str, torch.Tensor]:
    """A learner's weights with any torch.compile prefix removed; name None = the method's only model."""
    learners = trainer.learners
    if name is None:
        if len(learners) != 1:
            raise ValueError(f"expected one model in fastkd's {trainer.cfg.method}, found {sorted(learners)}")
        name = next(iter(learners))
    return {k.replace("_orig_mod.", ""): v for k, v in learners[name].model.state_dict().items()}


def build_reference(method: str, trainer: Trainer, data_root: Path, *, workers: int, persistent_workers: bool = False,
                    log_steps: bool = False):
    """The reference-style loop of `method` with the settings of `trainer`'s config and its models (same
    architecture, checked by a strict state_dict load, and the same initial weights), data, device and dtype."""
    from .models import StudentNet, TeacherNet, create_model, dropout_resnet, self_kd_resnet  # noqa: F401

    rs = load_reference_style()
    cfg = trainer.cfg
    device = torch.device(trainer.runtime.device)
    dtype = torch.float64 if cfg.train.float64 else torch.float32
    width = cfg.model.student_downsample_factor
    optim = dict(lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
    common = dict(device=device, dtype=dtype, log_steps=log_steps, **optim)

    def prepared(model: torch.nn.Module, learner: str | None) -> torch.nn.Module:
        model.load_state_dict(_learner_state(trainer, learner))
        return model.to(device=device, dtype=dtype)

    def loader(recipe: str):
        return rs.train_loader(data_root, recipe, cfg.data.batch_size, augment=cfg.data.augment == "default",
                               shuffle=cfg.data.shuffle, num_workers=workers, persistent_workers=persistent_workers)

    if method in ("spaced_online_kd", "online_kd"):
        teacher = prepared(TeacherNet(create_model(cfg.model.teacher, num_classes=NUM_CLASSES,
                                                   downsample_factor=cfg.model.downsample_factor)), "teacher")
        student = prepared(StudentNet(create_model(cfg.model.student, num_classes=NUM_CLASSES,
                                                   downsample_factor=width), teacher.feature_size), "student")
        rate = cfg.kd.interval if method == "spaced_online_kd" else 0.0
        return rs.SpacedOnlineKD(teacher, student, loader("online_kd"), interval_rate=rate,
                                 temperature=cfg.kd.temperature, alpha=cfg.kd.alpha, beta=cfg.kd.beta, **common)
    if method == "spaced_self_kd":
        net = prepared(create_model("selfkd_resnet18", num_classes=NUM_CLASSES, downsample_factor=width), None)
        return rs.SpacedSelfKD(net, loader("self_kd"), interval_rate=cfg.kd.interval, temperature=cfg.kd.temperature,
                               lam=cfg.kd.alpha, mu=cfg.kd.beta, **common)
    if method == "spaced_ema":
        model = prepared(create_model(cfg.model.student, num_classes=NUM_CLASSES, downsample_factor=width), None)
        return rs.SpacedEMA(model, loader("online_kd"), interval=cfg.ema.interval, decay=cfg.ema.decay, **common)
    if method == "spaced_dropout":
        data = loader("online_kd")
        net = prepared(create_model("dropout_resnet18", num_classes=NUM_CLASSES, drop_op=cfg.dropout.op,
                                    drop_rate=cfg.dropout.rate, downsample_factor=width), None)
        drop_method = "SpacedDropout" if cfg.dropout.op == "standard" else "MaxSpacedDropout"
        model = rs.ReferenceDropoutResNet(net, cfg.dropout.rate, drop_method, int(cfg.dropout.space * len(data)))
        return rs.SpacedDropout(model, data, nesterov=cfg.optim.nesterov, **common)
    raise ValueError(f"no reference-style loop for method {method!r}; choose one of {', '.join(BENCH_METHODS)}")


class FastkdRounds:
    """Drives a Trainer one epoch at a time through its public `fit()` (train.max_steps moves one epoch on).

    Checkpoint writes are skipped (the reference writes none); the peak size of the method's replay log is
    recorded when it is drained.
    """

    def __init__(self, trainer: Trainer, iters_per_epoch: int):
        from .engine.replay import ReplayLog

        self.trainer = trainer
        self.iters_per_epoch = iters_per_epoch
        trainer.save = lambda name: None
        self.replay_logs = [v for v in vars(trainer.method).values() if isinstance(v, ReplayLog)]
        self.replay_peak_bytes = 0
        for log in self.replay_logs:
            log.drain = self._tracked_drain(log, log.drain)

    def _tracked_drain(self, log, drain: Callable) -> Callable:
        def tracked():
            self.replay_peak_bytes = max(self.replay_peak_bytes, log.nbytes())
            return drain()
        return tracked

    def train_epoch(self) -> None:
        self.trainer.cfg.train.max_steps = self.trainer.global_step + self.iters_per_epoch
        self.trainer.fit()


# ======================================================================================= measurements
def _sync(device: torch.device) -> None:
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
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
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
    from torch.profiler import ProfilerActivity, profile

    # Kineto logs an ERROR line about the missing GPU on CPU-only machines with a CUDA build of torch.
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        wall = time.perf_counter() - start
    return breakdown_from_events(prof.events(), wall)


def count_flops(run: Callable[[], Any]) -> float:
    """Matmul/conv FLOPs (forward and backward) of one eager round."""
    from torch.utils.flop_counter import FlopCounterMode

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
    from torch.utils.flop_counter import FlopCounterMode

    from .models import create_model

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
    _sync(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


# ========================================================================================= one method
@dataclass
class SideResult:
    images_per_s: list[float] = field(default_factory=list)
    host_rss_peak_mb: float | None = None
    host_rss_growth_mb: float | None = None
    device_peak_mb: float | None = None
    device_growth_mb: float | None = None
    replay_buffer_peak_bytes: int | None = None
    gflop_per_round: float | None = None

    def add(self, images: int, m: RoundMeasure) -> None:
        self.images_per_s.append(images / m.seconds)
        for name in ("host_rss_peak_mb", "host_rss_growth_mb", "device_peak_mb", "device_growth_mb"):
            value = getattr(m, name)
            if value is not None:
                current = getattr(self, name)
                setattr(self, name, value if current is None else max(current, value))

    @property
    def median(self) -> float:
        return statistics.median(self.images_per_s)


def bench_method(method: BenchMethod, preset: Preset, rounds: int, workdir: Path, progress) -> dict[str, Any]:
    """Warm-up, `rounds` interleaved fastkd/reference rounds and a profiled fastkd round for one method."""
    from .engine.trainer import Trainer

    scale = preset.scales[method.name]
    device = torch.device(preset.device)
    data_root = workdir / f"data-{scale.train_images}"
    if not data_root.exists():
        write_synthetic_cifar100(data_root, scale.train_images, preset.test_images)
    epochs = preset.warmup_rounds + rounds + 3
    cfg = fastkd_config(method, scale, preset.device, data_root, workdir / "runs", epochs)
    trainer = Trainer(cfg, workdir / "runs" / method.name, quiet=True)
    fast = FastkdRounds(trainer, scale.iters_per_epoch)
    reference = build_reference(method.name, trainer, data_root, workers=preset.workers,
                                persistent_workers=preset.persistent_workers)
    fastkd, ref = SideResult(), SideResult()

    def step(label: str) -> None:
        progress.set_postfix_str(f"{method.name}: {label}", refresh=True)

    step("fastkd warm-up")
    if trainer.runtime.compile:
        fastkd.gflop_per_round = _eager_twin_flops(method, scale, preset, data_root, workdir, epochs) / 1e9
    for r in range(preset.warmup_rounds):
        if r == 0 and not trainer.runtime.compile:
            fastkd.gflop_per_round = count_flops(fast.train_epoch) / 1e9
        else:
            fast.train_epoch()
    progress.update(1)
    step("reference warm-up")
    for _ in range(preset.warmup_rounds):
        reference.train_epoch()
    progress.update(1)
    for r in range(rounds):
        step(f"fastkd round {r + 1}/{rounds}")
        fastkd.add(scale.train_images, measure_round(fast.train_epoch, device))
        progress.update(1)
        step(f"reference round {r + 1}/{rounds}")
        ref.add(scale.train_images, measure_round(reference.train_epoch, device))
        progress.update(1)
    step("fastkd profiled round")
    breakdown = profile_round(fast.train_epoch, device)
    progress.update(1)

    if method.has_replay_buffer:
        fastkd.replay_buffer_peak_bytes = fast.replay_peak_bytes if fast.replay_logs else None
        ref.replay_buffer_peak_bytes = reference.buffer_peak_bytes
    ratios = [f / r for f, r in zip(fastkd.images_per_s, ref.images_per_s)]
    seconds_per_round = scale.train_images / fastkd.median
    return {
        "method": method.name, "status": "ok", "reference_script": method.reference_script,
        "setting": method.setting, "batch_size": scale.batch_size, "train_images": scale.train_images,
        "iters_per_epoch": scale.iters_per_epoch, "width_divisor": scale.width_divisor,
        "fastkd_runtime": trainer.runtime.describe(), "fastkd_overrides": method.fastkd_overrides(scale),
        "fastkd": asdict(fastkd) | {"median_images_per_s": fastkd.median},
        "reference": asdict(ref) | {"median_images_per_s": ref.median},
        "speedup": {"per_round": ratios, "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
        "fastkd_breakdown": breakdown,
        "fastkd_overhead_share": 1.0 - sum(breakdown[part] for part in CORE_WORK),
        "fastkd_gflops": (fastkd.gflop_per_round / seconds_per_round) if fastkd.gflop_per_round else None,
    }


def _eager_twin_flops(method: BenchMethod, scale: Scale, preset: Preset, data_root: Path, workdir: Path,
                      epochs: int) -> float:
    """FLOPs of one round counted on an eager copy of the run: torch.compile hides ops from FlopCounterMode."""
    from .engine.trainer import Trainer

    cfg = fastkd_config(method, scale, preset.device, data_root, workdir / "runs-eager", epochs, ["train.compile=off"])
    twin = FastkdRounds(Trainer(cfg, workdir / "runs-eager" / method.name, quiet=True), scale.iters_per_epoch)
    return count_flops(twin.train_epoch)


def _with_ceiling_share(row: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, Any]:
    """fastkd's achieved GFLOP/s over the ResNet-18 ceiling at the row's batch and width, and over the matmul."""
    gflops = row["fastkd_gflops"]
    key = ceiling_key(Scale(row["batch_size"], row["train_images"], row["width_divisor"]))
    row["ceiling_key"] = key
    row["ceiling_share"] = None if gflops is None else {
        "resnet18": gflops / ceiling["resnet18"][key]["best"]["gflops"], "matmul": gflops / ceiling["matmul"]["gflops"]}
    return row


# ============================================================================================= report
def machine_description(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 ** 2, 1)
    description = {
        "cpu": cpu, "cpu_count": os.cpu_count(), "memory_gib": memory_gib, "torch_threads": torch.get_num_threads(),
        "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "python": platform.python_version(), "torch": torch.__version__, "fastkd": __version__,
        "git_commit": _git_commit(),
        "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    return description


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _fmt_bytes(value: int | None) -> str:
    if value is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def _fmt_mb(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} MB"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def markdown_report(results: dict[str, Any]) -> str:
    m, c, p = results["machine"], results["ceiling"], results["preset"]
    lines = [
        f"# fastkd bench — preset `{p['name']}`, {results['date']}",
        "",
        f"Machine: {m['cpu']} ({m['cpu_count']} logical CPUs, {m['memory_gib']} GiB)"
        + (f", GPU {m['gpu']}" if m["gpu"] else ", no GPU used")
        + f"; torch {m['torch']}, {m['torch_threads']} threads; fastkd {m['fastkd']}"
        + (f" (git {m['git_commit']})" if m["git_commit"] else "")
        + (f"; load average {m['load_average_at_start']:.2f} at the start" if m["load_average_at_start"] is not None
           else "") + ".",
        "",
        f"Ceiling: matmul {c['matmul']['size']}² {c['matmul']['dtype']} **{c['matmul']['gflops']:.1f} GFLOP/s**; "
        "ResNet-18 forward+backward (no optimizer, no data), best of channels_last on/off × threads:",
        "",
        *(f"- {key}, {r['precision']}: **{r['best']['gflops']:.1f} GFLOP/s** = {r['best']['images_per_s']:.0f} img/s "
          f"(channels_last={'on' if r['best']['channels_last'] else 'off'}, threads={r['best']['threads']})"
          for key, r in c["resnet18"].items()),
        "",
        f"{results['rounds']} timed rounds per side after {p['warmup_rounds']} warm-up round(s), interleaved fastkd, "
        "reference, fastkd, ...; one round = one epoch of the synthetic CIFAR-100-layout data. Images/s = training "
        "images per second (each image is used by every model of the method). Speed-up = fastkd / reference, median "
        "of the per-round ratios (min–max).",
        "",
        "| method | setting | batch × L | fastkd img/s | reference img/s | speed-up (min–max) | fastkd overhead "
        "| fastkd GFLOP/s (share of ResNet-18 / matmul ceiling) | replay buffer fastkd / reference "
        "| host RSS growth fastkd / reference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["methods"]:
        if row["status"] != "ok":
            lines.append(f"| {row['method']} | {row['status']}: {row['reason']} |  |  |  |  |  |  |  |  |")
            continue
        f, r, s = row["fastkd"], row["reference"], row["speedup"]
        share = row["ceiling_share"]
        flops = "—" if row["fastkd_gflops"] is None else (
            f"{row['fastkd_gflops']:.1f} ({_pct(share['resnet18'])} / {_pct(share['matmul'])})")
        lines.append(
            f"| {row['method']} | {row['setting']} | {row['batch_size']} × {row['iters_per_epoch']} "
            f"| {f['median_images_per_s']:.1f} | {r['median_images_per_s']:.1f} "
            f"| **{s['median']:.2f}×** ({s['min']:.2f}–{s['max']:.2f}) | {_pct(row['fastkd_overhead_share'])} "
            f"| {flops} | {_fmt_bytes(f['replay_buffer_peak_bytes'])} / {_fmt_bytes(r['replay_buffer_peak_bytes'])} "
            f"| {_fmt_mb(f['host_rss_growth_mb'])} / {_fmt_mb(r['host_rss_growth_mb'])} |")
    parts = list(BREAKDOWN_LABELS.values()) + ["other"]
    lines += ["", "fastkd time breakdown (share of the wall time of one profiled round; labels exclusive of nested "
              "labels; overhead = everything but forward, backward and optimizer):", "",
              "| method | " + " | ".join(parts) + " |", "|---|" + "---|" * len(parts)]
    for row in results["methods"]:
        if row["status"] == "ok":
            lines.append(f"| {row['method']} | " + " | ".join(_pct(row["fastkd_breakdown"][k]) for k in parts) + " |")
    if any(row["status"] == "ok" and row["fastkd"]["device_peak_mb"] is not None for row in results["methods"]):
        lines += ["", "| method | device peak fastkd | device peak reference |", "|---|---|---|"]
        for row in results["methods"]:
            if row["status"] == "ok":
                lines.append(f"| {row['method']} | {_fmt_mb(row['fastkd']['device_peak_mb'])} "
                             f"| {_fmt_mb(row['reference']['device_peak_mb'])} |")
    return "\n".join(lines) + "\n"


def write_charts(results: dict[str, Any], out: Path) -> list[Path]:
    """throughput.png (images/s with min–max over rounds), breakdown.png (fastkd time shares), memory.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["methods"] if r["status"] == "ok"]
    names = [r["method"] for r in rows]
    x = np.arange(len(rows))
    paths = []

    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(rows) + 2), 4))
    for offset, side, colour in ((-0.2, "fastkd", "tab:blue"), (0.2, "reference", "tab:grey")):
        values = [r[side]["median_images_per_s"] for r in rows]
        low = [v - min(r[side]["images_per_s"]) for v, r in zip(values, rows)]
        high = [max(r[side]["images_per_s"]) - v for v, r in zip(values, rows)]
        ax.bar(x + offset, values, 0.4, yerr=[low, high], capsize=3, label=side, color=colour)
    for i, r in enumerate(rows):
        ax.annotate(f"{r['speedup']['median']:.2f}×", (i, max(r["fastkd"]["median_images_per_s"],
                                                             r["reference"]["median_images_per_s"])),
                    ha="center", va="bottom", xytext=(0, 6), textcoords="offset points")
    ax.set_xticks(x, names)
    ax.set_ylabel("training images / s")
    ax.set_title(f"fastkd vs reference-style loop ({results['preset']['name']})")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "throughput.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    parts = list(BREAKDOWN_LABELS.values()) + ["other"]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.6 * len(rows) + 1.5)))
    left = np.zeros(len(rows))
    for part in parts:
        shares = np.array([r["fastkd_breakdown"][part] for r in rows])
        ax.barh(x, shares, left=left, label=part)
        left += shares
    ax.set_yticks(x, names)
    ax.set_xlabel("share of a fastkd round")
    ax.set_xlim(0, 1)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("fastkd time breakdown")
    fig.tight_layout()
    paths.append(out / "breakdown.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, (ax_buf, ax_rss) = plt.subplots(1, 2, figsize=(max(8, 2.4 * len(rows) + 2), 4))
    for offset, side, colour in ((-0.2, "fastkd", "tab:blue"), (0.2, "reference", "tab:grey")):
        buffers = [r[side]["replay_buffer_peak_bytes"] for r in rows]
        growth = [r[side]["host_rss_growth_mb"] or 0 for r in rows]
        # Methods without a replay buffer get no bar; an empty buffer is drawn at 1 byte (log axis) and labelled.
        heights = [np.nan if b is None else max(b, 1) for b in buffers]
        bars = ax_buf.bar(x + offset, heights, 0.4, label=side, color=colour)
        ax_buf.bar_label(bars, labels=["" if b is None else _fmt_bytes(b) for b in buffers], fontsize="x-small")
        ax_rss.bar(x + offset, growth, 0.4, label=side, color=colour)
    ax_buf.set_yscale("log")
    ax_buf.set_ylabel("bytes (log)")
    ax_buf.set_title("replay buffer at the replay event (no bar: no buffer)")
    ax_rss.set_title("host RSS growth in a round (main process)")
    ax_rss.set_ylabel("MB")
    for ax in (ax_buf, ax_rss):
        ax.set_xticks(x, names, rotation=20)
        ax.legend()
    fig.tight_layout()
    paths.append(out / "memory.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


# ================================================================================================ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu-small",
                        help="; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()))
    parser.add_argument("--methods", default="all",
                        help=f"comma-separated subset of {', '.join(BENCH_METHODS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per side (default: the preset's)")
    parser.add_argument("--out", default="runs/bench", help="results folder (results.json, results.md, *.png)")


def _resolve(args: argparse.Namespace) -> tuple[Preset, list[BenchMethod], int, Path]:
    preset = PRESETS.get(args.preset)
    if preset is None:
        raise BenchOptionError(f"--preset {args.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    names = list(BENCH_METHODS) if args.methods.strip() == "all" else [
        n.strip() for n in args.methods.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCH_METHODS]
    if unknown or not names:
        raise BenchOptionError(f"--methods {args.methods!r}: unknown method {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(BENCH_METHODS)} or all")
    rounds = preset.rounds if args.rounds is None else args.rounds
    if rounds < 1:
        raise BenchOptionError(f"--rounds {rounds}: need at least 1 timed round per side")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BenchOptionError(f"--out {out}: exists and is not a folder; pick a folder path")
    if preset.device == "cuda" and not torch.cuda.is_available():
        raise BenchOptionError(f"--preset {preset.name} needs a CUDA device and none is visible; "
                         "use --preset cpu-small on this machine")
    return preset, [BENCH_METHODS[n] for n in dict.fromkeys(names)], rounds, out


def run(args: argparse.Namespace) -> int:
    """Run the suite; returns 0, or 1 when a method failed (its row then says why). Bad options raise
    BenchOptionError (a ValueError) with one line."""
    from tqdm.auto import tqdm

    preset, methods, rounds, out = _resolve(args)
    load_reference_style()
    device = torch.device(preset.device)
    available = [m for m in methods if m.name in METHODS]
    per_method = 2 + 2 * rounds + 1
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "preset": {k: v for k, v in asdict(preset).items() if k != "scales"},
        "rounds": rounds, "machine": machine_description(device), "methods": [],
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="fastkd-bench-") as tmp, warnings.catch_warnings(), \
            tqdm(total=1 + per_method * len(available), desc="fastkd bench", unit="round",
                 dynamic_ncols=True) as progress:
        # The reference's 4 workers are the setting being measured, also on machines with fewer cores.
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        progress.set_postfix_str("machine ceiling", refresh=True)
        scales = [preset.scales[m.name] for m in available] or [preset.scales["spaced_online_kd"]]
        results["ceiling"] = measure_ceiling(preset, device, scales)
        progress.update(1)
        for method in methods:
            if method.name not in METHODS:
                results["methods"].append({"method": method.name, "status": "pending",
                                           "reason": f"fastkd has no `{method.name}` method yet"})
                continue
            try:
                row = bench_method(method, preset, rounds, Path(tmp), progress)
            except Exception as exc:  # one broken row must not lose the others; the row records why
                failed = True
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                row = {"method": method.name, "status": "error", "reason": reason}
            gc.collect()  # the finished method's models and buffers must not count in the next one's memory
            results["methods"].append(_with_ceiling_share(row, results["ceiling"]) if row["status"] == "ok" else row)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown_report(results)
    (out / "results.md").write_text(table)
    write_charts(results, out)
    print(table)
    print(f"results: {out / 'results.json'}, {out / 'results.md'}, {out}/*.png")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m fastkd.bench ...` (the same as `fastkd bench ...`)."""
    parser = argparse.ArgumentParser(prog="fastkd bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except BenchOptionError as exc:
        print(f"fastkd bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
