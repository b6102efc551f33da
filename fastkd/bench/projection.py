"""`fastkd bench --projection`: how long the paper's full runs take on this machine, from timed full-size steps.

For each run (CIFAR-100 spaced online KD, ResNet-18 -> ResNet-18, s = 1.5, 80 epochs, batch 128; DeiT-Ti spaced
KD at 224 px, per epoch) and each setting (fastkd's defaults for the device; the reference's settings: fp32, no
compile, NCHW, in the same engine) one Trainer is built on full-size synthetic CIFAR-100 data (50,000 training and
10,000 test images, device-resident) and timed in parts, the device synchronised around each:

- *start-up*: building the Trainer (data upload, models), plus the first replay interval and the first evaluation
  beyond their steady-state cost (torch.compile's graphs are made there);
- *teacher step*: the teacher-only steps between two replay events;
- *student step*: the replay event (one teacher step and the student's replayed steps), less one teacher step;
- *evaluation* of the 10,000 test images, and one atomic *checkpoint* write.

The run's own plan (the interval arithmetic `fastkd plan` prints) then counts how many of each the full run takes:
projected time = teacher steps x teacher step + student steps x student step + epochs x (evaluation + checkpoint)
+ start-up. The timing replays at a shorter interval than the paper's (`measure_interval`), so a GPU check can
afford it: a step costs the same whatever the interval. One replay interval of the fastkd setting is also run
under the torch profiler for the time breakdown.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from ..config import load_config
from ..engine.checkpoint import save_atomic
from ..engine.trainer import Trainer
from ..plans.online_kd import plan_online_kd
from ..plans.vit_kd import plan_vit
from .data import write_synthetic_cifar100
from .measure import CORE_WORK, profile_round, sync_device
from .presets import BENCH_METHODS, PRESETS, BenchOptionError, Preset, Scale
from .report import machine_description

SETTINGS: dict[str, tuple[str, ...]] = {
    "fastkd": (),
    "reference settings": ("train.amp=off", "train.compile=off", "train.channels_last=false"),
}
"""fastkd's defaults for the device (on CUDA: bf16 autocast, torch.compile, channels_last), and the reference
scripts' numerics (fp32, eager, NCHW) run by the same engine."""


@dataclass(frozen=True)
class ProjectedRun:
    """A paper run whose wall time is projected."""

    key: str
    title: str
    bench_method: str
    """The `fastkd bench` row whose settings (models, hyper-parameters) the run uses."""
    interval_key: str
    paper_interval: float
    paper_epochs: int
    """Epochs of the projected run; 1 reports the time of one epoch."""
    measure_interval: float
    """The spacing while timing: a replay event every int/ceil(L * s) steps, shorter than the paper's."""
    scale: Scale
    test_images: int


def projected_runs(preset: Preset) -> list[ProjectedRun]:
    """The two projections at the preset's sizes: full size on the GPU presets, tiny in the `test` preset."""
    sizes = preset.projection
    if sizes is None:
        with_sizes = ", ".join(name for name, p in PRESETS.items() if p.projection is not None)
        raise BenchOptionError(f"--projection: preset {preset.name} has no projection sizes; use one of {with_sizes}")
    return [
        ProjectedRun("cifar100_spaced_online_kd", "CIFAR-100 spaced online KD, ResNet-18 -> ResNet-18, s = 1.5, "
                     "80 epochs, batch 128", "spaced_online_kd", "kd.interval", 1.5, 80, sizes.cnn_interval,
                     sizes.cnn, sizes.test_images),
        ProjectedRun("deit_tiny_spaced_kd_epoch", "DeiT-Ti spaced KD at 224 px (s = 1.0), one epoch, batch 128",
                     "vit_spaced_kd", "vit.interval", 1.0, 1, sizes.vit_interval, sizes.vit, sizes.test_images),
    ]


@dataclass
class StepCosts:
    """Seconds per part, measured on one Trainer."""

    startup: float
    teacher_step: float
    student_step: float
    evaluation: float
    checkpoint: float
    period: int
    """Teacher steps between replay events while measuring."""
    replay_steps: int
    """Student steps per replay event while measuring."""


def _timed(run: Callable[[], Any], device: torch.device) -> float:
    sync_device(device)
    start = time.perf_counter()
    run()
    sync_device(device)
    return time.perf_counter() - start


def _replay_period(trainer: Trainer) -> tuple[int, int]:
    """(teacher steps between replay events, student steps per event) of the trainer's plan."""
    plan = trainer.plan
    if hasattr(plan, "teacher_steps_per_replay"):
        return plan.teacher_steps_per_replay, plan.replay_steps_per_event
    return plan.interval, plan.interval


def measure_step_costs(trainer: Trainer, workdir: Path, profile: bool) -> tuple[StepCosts, dict[str, float] | None]:
    """Time the parts of a spaced run on `trainer` (freshly built, at step 0); see the module docstring."""
    device = trainer.runtime.device
    period, replay_steps = _replay_period(trainer)
    if period < 2:
        raise ValueError(f"the measuring interval gives {period} teacher step(s) per replay; it needs >= 2")
    warm = _timed(lambda: trainer.fit(max_steps=period), device)
    warm_eval = _timed(trainer.evaluate, device)
    teacher = _timed(lambda: trainer.fit(max_steps=2 * period - 1), device) / (period - 1)
    replay = _timed(lambda: trainer.fit(max_steps=2 * period), device)
    student = (replay - teacher) / replay_steps
    evaluation = _timed(trainer.evaluate, device)
    checkpoint = _timed(lambda: save_atomic(trainer.state_dict(), workdir / "last.pt"), device)
    breakdown = None
    if profile:
        breakdown = profile_round(lambda: trainer.fit(max_steps=3 * period), device)
    startup_extra = (warm - period * teacher - replay_steps * student) + (warm_eval - evaluation)
    return StepCosts(max(0.0, startup_extra), teacher, student, evaluation, checkpoint, period,
                     replay_steps), breakdown


def paper_counts(run: ProjectedRun, train_images: int, batch_size: int) -> dict[str, int]:
    """Teacher steps, student steps and epochs of the projected run, from its plan."""
    if run.bench_method == "vit_spaced_kd":
        iters = train_images // batch_size  # drop_last, as the pycls loader
        plan = plan_vit("vit_spaced_kd", "reference", iters, run.paper_epochs, run.paper_interval)
        return {"iters_per_epoch": iters, "teacher_steps": plan.teacher_steps, "student_steps": plan.student_steps,
                "epochs": run.paper_epochs, "replay_events": plan.replay_events}
    iters = math.ceil(train_images / batch_size)
    plan = plan_online_kd("spaced_online_kd", "reference", iters, run.paper_epochs, run.paper_interval)
    return {"iters_per_epoch": iters, "teacher_steps": plan.teacher_steps, "student_steps": plan.student_steps,
            "epochs": run.paper_epochs, "replay_events": plan.replay_events}


def project(costs: StepCosts, counts: dict[str, int], build_seconds: float) -> dict[str, float]:
    """The projected wall time of the run, split into its parts (seconds)."""
    parts = {
        "teacher_steps": counts["teacher_steps"] * costs.teacher_step,
        "student_steps": counts["student_steps"] * costs.student_step,
        "evaluation": counts["epochs"] * costs.evaluation,
        "checkpoints": counts["epochs"] * costs.checkpoint,
        "startup": build_seconds + costs.startup,
    }
    parts["total"] = sum(parts.values())
    return parts


def _config(run: ProjectedRun, setting: tuple[str, ...], device: str, data_root: Path, output_dir: Path):
    method = BENCH_METHODS[run.bench_method]
    return load_config(None, [
        f"name={run.key}", f"output_dir={output_dir}", "semantics=reference", "seed=0", "data.dataset=cifar100",
        f"data.root={data_root}", f"data.batch_size={run.scale.batch_size}", f"train.device={device}",
        f"train.epochs={max(run.paper_epochs, 3)}", "train.eval_every=1000000", "train.progress=false",
        "train.tensorboard=false", "train.checkpoints=false", *method.fastkd_overrides(run.scale),
        f"{run.interval_key}={run.measure_interval}", *setting,
    ])


def project_run(run: ProjectedRun, device: str, workdir: Path, progress) -> dict[str, Any]:
    data_root = workdir / f"data-{run.scale.train_images}-{run.test_images}"
    if not data_root.exists():
        write_synthetic_cifar100(data_root, run.scale.train_images, run.test_images)
    counts = paper_counts(run, run.scale.train_images, run.scale.batch_size)
    row: dict[str, Any] = {"key": run.key, "title": run.title, "status": "ok", "counts": counts,
                           "measure_interval": run.measure_interval, "train_images": run.scale.train_images,
                           "test_images": run.test_images, "image_size": run.scale.image_size, "settings": {}}
    for name, setting in SETTINGS.items():
        progress.set_postfix_str(f"{run.key}: {name}", refresh=True)
        cfg = _config(run, setting, device, data_root, workdir / "runs")
        run_dir = workdir / "runs" / f"{run.key}-{name.replace(' ', '-')}"
        start = time.perf_counter()
        trainer = Trainer(cfg, run_dir, quiet=True)
        build = time.perf_counter() - start
        costs, breakdown = measure_step_costs(trainer, run_dir, profile=name == "fastkd")
        row["settings"][name] = {
            "runtime": trainer.runtime.describe(), "build_seconds": build, "costs": asdict(costs),
            "projected_seconds": project(costs, counts, build), "breakdown": breakdown,
            "overhead_share": None if breakdown is None else 1.0 - sum(breakdown[p] for p in CORE_WORK),
        }
        del trainer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        progress.update(1)
    fast, ref = (row["settings"][n]["projected_seconds"]["total"] for n in SETTINGS)
    row["speedup"] = ref / fast
    return row


def run_projection(preset: Preset, out: Path, write: Callable[[dict[str, Any], Path, Callable], str]) -> int:
    """Every projection of `preset`; returns 0, or 1 when one failed (its row says why)."""
    device = torch.device(preset.device)
    runs = projected_runs(preset)
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "preset": preset.name,
        "machine": machine_description(device), "settings": {k: list(v) for k, v in SETTINGS.items()},
        "projections": [],
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="fastkd-projection-") as tmp, \
            tqdm(total=len(runs) * len(SETTINGS), desc="fastkd bench --projection", unit="setting",
                 dynamic_ncols=True) as progress:
        for run in runs:
            try:
                row = project_run(run, preset.device, Path(tmp), progress)
            except Exception as exc:  # one broken projection must not lose the other
                failed = True
                row = {"key": run.key, "title": run.title, "status": "error",
                       "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            results["projections"].append(row)
            write(results, out, projection_markdown)
    table = write(results, out, projection_markdown)
    print(table)
    print(f"results: {out / 'results.json'}, {out / 'results.md'}")
    return 1 if failed else 0


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _pixels(row: dict[str, Any]) -> str:
    return "" if row["image_size"] is None else f" at {row['image_size']} px"


def projection_markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [f"# fastkd bench --projection — preset `{results['preset']}`, {results['date']}", "",
             f"Machine: {machine.get('cpu')}, GPU {machine.get('gpu') or 'none'}; torch {machine.get('torch')}.", "",
             "Projected wall time of the paper's runs from timed full-size steps (teacher step, student step, "
             "evaluation, checkpoint, start-up) multiplied by the run's plan; `reference settings` = fp32, no "
             "compile, NCHW in the same engine.", ""]
    for row in results["projections"]:
        if row["status"] != "ok":
            lines += [f"## {row['title']}", "", f"error: {row['reason']}", ""]
            continue
        c = row["counts"]
        lines += [f"## {row['title']}", "",
                  f"Plan: L = {c['iters_per_epoch']}, {c['epochs']} epoch(s), {c['teacher_steps']} teacher steps, "
                  f"{c['student_steps']} student steps, {c['replay_events']} replay events; timed on "
                  f"{row['train_images']} training / {row['test_images']} test images{_pixels(row)}, replaying "
                  f"every s = {row['measure_interval']} epochs.", "",
                  "| setting | runtime | teacher step | student step | eval | checkpoint | start-up | "
                  "**projected** |", "|---|---|---|---|---|---|---|---|"]
        for name, s in row["settings"].items():
            k, p = s["costs"], s["projected_seconds"]
            lines.append(f"| {name} | {s['runtime']} | {k['teacher_step'] * 1e3:.2f} ms | "
                         f"{k['student_step'] * 1e3:.2f} ms | {k['evaluation']:.2f} s | {k['checkpoint']:.2f} s | "
                         f"{p['startup']:.1f} s | **{_duration(p['total'])}** |")
        lines += ["", f"fastkd vs the reference's settings: **{row['speedup']:.2f}x**.", ""]
        breakdown = row["settings"]["fastkd"]["breakdown"]
        if breakdown:
            lines += ["fastkd, one profiled replay interval: " + ", ".join(
                f"{part} {share:.1%}" for part, share in breakdown.items()), ""]
    return "\n".join(lines)
