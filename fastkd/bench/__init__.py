"""`fastkd bench`: fastkd against loops with the reference code's hot-path structure, plus kernel micro-benchmarks.

Modules: `presets` (what runs), `runner` (the two sides of each row, the CLI), `fastkd_side` (the fastkd side's
config and timed rounds), `measure` (timings, memory, profile, ceiling), `kernels` (kernel micro-benchmarks),
`scaling` (`--nproc`), `report` and `charts` (results.md, PNGs), `data` (synthetic CIFAR-100-layout pickles) and
`reference_style` (the reference-structured training loops).
"""

from .data import write_synthetic_cifar100
from .fastkd_side import FastkdRounds, fastkd_config
from .measure import BREAKDOWN_LABELS, breakdown_from_events
from .presets import BENCH_METHODS, PRESETS, BenchMethod, BenchOptionError, KernelSizes, Preset, Scale
from .runner import add_arguments, build_reference, main, run

__all__ = [
    "BENCH_METHODS", "BREAKDOWN_LABELS", "BenchMethod", "BenchOptionError", "FastkdRounds", "KernelSizes", "PRESETS",
    "Preset", "Scale", "add_arguments", "breakdown_from_events", "build_reference", "fastkd_config", "main", "run",
    "write_synthetic_cifar100",
]
