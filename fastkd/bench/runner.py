"""`fastkd bench`: fastkd against the reference implementation's training-loop structure, in one process.

Per method both sides train the same models (same initial weights) on the same synthetic CIFAR-100-layout data;
one round is one epoch. After a warm-up round each (fastkd's counts its FLOPs), the sides alternate fastkd,
reference, fastkd, reference ... for `--rounds`; one extra profiled fastkd round gives the time breakdown. The
machine's ceiling (a large matmul, a ResNet-18 forward+backward at the best layout and thread count) is measured
once; presets with kernel sizes also time the fused kernels against the plain torch ops. Results go to `--out`:
results.json, results.md and PNG bar charts (results.json and results.md are rewritten after every method, so a
run stopped by a time limit keeps what it measured).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from ..config import METHODS
from ..engine.trainer import Trainer
from ..models import StudentNet, TeacherNet, create_model, dropout_resnet, self_kd_resnet  # noqa: F401
from . import reference_style as rs
from .authors import run_authors
from .charts import write_charts
from .data import write_synthetic_cifar100
from .fastkd_side import FastkdRounds, fastkd_config
from .kernels import bench_kernels
from .measure import CORE_WORK, RoundMeasure, ceiling_key, count_flops, measure_ceiling, measure_round, profile_round
from .presets import BENCH_METHODS, NUM_CLASSES, PRESETS, BenchMethod, BenchOptionError, Preset, Scale
from .projection import projected_runs, run_projection
from .report import machine_description, markdown_report
from .scaling import SYNC_BN_CHOICES, bench_scaling, parse_nproc, scaling_markdown

def _learner_state(trainer: Trainer, name: str | None) -> dict[str, torch.Tensor]:
    """A learner's weights (compiled in place, so the keys are the plain ones); name None = the method's only model."""
    learners = trainer.learners
    if name is None:
        if len(learners) != 1:
            raise ValueError(f"expected one model in fastkd's {trainer.cfg.method}, found {sorted(learners)}")
        name = next(iter(learners))
    return learners[name].model.state_dict()


def build_reference(method: str, trainer: Trainer, data_root: Path, *, workers: int, persistent_workers: bool = False,
                    log_steps: bool = False):
    """The reference-style loop of the bench row `method` with the settings of `trainer`'s config and its models
    (same architecture, checked by a strict state_dict load, and the same initial weights), data, device and dtype.
    Each method family has one loop."""
    if method not in BENCH_METHODS:
        raise ValueError(f"no reference-style loop for method {method!r}; choose one of {', '.join(BENCH_METHODS)}")
    family = BENCH_METHODS[method].spec.family
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

    if family == "online_kd":
        teacher = prepared(TeacherNet(create_model(cfg.model.teacher, num_classes=NUM_CLASSES,
                                                   downsample_factor=cfg.model.downsample_factor)), "teacher")
        student = prepared(StudentNet(create_model(cfg.model.student, num_classes=NUM_CLASSES,
                                                   downsample_factor=width), teacher.feature_size), "student")
        rate = cfg.kd.interval if trainer.plan.mode == "spaced" else 0.0  # online KD (the plan's I = 0) is rate 0
        return rs.SpacedOnlineKD(teacher, student, loader("online_kd"), interval_rate=rate,
                                 temperature=cfg.kd.temperature, alpha=cfg.kd.alpha, beta=cfg.kd.beta, **common)
    if family == "self_kd":
        net = prepared(create_model("selfkd_resnet18", num_classes=NUM_CLASSES, downsample_factor=width), None)
        return rs.SpacedSelfKD(net, loader("self_kd"), interval_rate=cfg.kd.interval, temperature=cfg.kd.temperature,
                               lam=cfg.kd.alpha, mu=cfg.kd.beta, **common)
    if family == "ema":
        model = prepared(create_model(cfg.model.student, num_classes=NUM_CLASSES, downsample_factor=width), None)
        return rs.SpacedEMA(model, loader("online_kd"), interval=cfg.ema.interval, decay=cfg.ema.decay, **common)
    if family == "dropout":
        data = loader("online_kd")
        net = prepared(create_model("dropout_resnet18", num_classes=NUM_CLASSES, drop_op=cfg.dropout.op,
                                    drop_rate=cfg.dropout.rate, downsample_factor=width), None)
        drop_method = "SpacedDropout" if cfg.dropout.op == "standard" else "MaxSpacedDropout"
        model = rs.ReferenceDropoutResNet(net, cfg.dropout.rate, drop_method, int(cfg.dropout.space * len(data)))
        return rs.SpacedDropout(model, data, nesterov=cfg.optim.nesterov, **common)
    return _reference_vit(trainer, data_root, device, dtype, workers, persistent_workers, log_steps)


def _reference_vit(trainer: Trainer, data_root: Path, device: torch.device, dtype: torch.dtype, workers: int,
                   persistent_workers: bool, log_steps: bool) -> rs.SpacedViTKD:
    """The pycls spaced-KD loop with `trainer`'s models, two independent loaders and its optimizer settings."""
    cfg = trainer.cfg
    image_size = cfg.data.image_size or 224

    def loader():
        return rs.vit_train_loader(data_root, image_size, cfg.data.batch_size, augment=cfg.data.augment == "default",
                                   shuffle=cfg.data.shuffle, num_workers=workers,
                                   persistent_workers=persistent_workers)

    teacher, student = (trainer.learners[name].model for name in ("teacher", "student"))
    models = {}
    for name, model in (("teacher", teacher), ("student", student)):
        twin = copy.deepcopy(getattr(model, "_orig_mod", model))  # eager, as the reference runs it
        twin.load_state_dict(model.state_dict())
        models[name] = twin.to(device=device, dtype=dtype)
    o, v = cfg.optim, cfg.vit
    return rs.SpacedViTKD(models["teacher"], models["student"], loader(), loader(), interval_rate=v.interval,
                          device=device, num_classes=NUM_CLASSES, teacher_img_size=v.teacher_img_size or image_size,
                          lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas), eps=o.eps,
                          epochs=cfg.train.epochs, min_lr=o.min_lr, warmup_epochs=o.warmup_epochs,
                          warmup_factor=o.warmup_factor, logit_weight=v.logit_weight, temperature=v.temperature,
                          dtype=dtype, log_steps=log_steps)


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
        fastkd.replay_buffer_peak_bytes = trainer.method.replay_peak_bytes()
        ref.replay_buffer_peak_bytes = reference.buffer_peak_bytes
    ratios = [f / r for f, r in zip(fastkd.images_per_s, ref.images_per_s)]
    seconds_per_round = scale.train_images / fastkd.median
    return {
        "method": method.name, "status": "ok", "reference_script": method.reference_script,
        "setting": method.setting, "batch_size": scale.batch_size, "train_images": scale.train_images,
        "iters_per_epoch": scale.iters_per_epoch, "width_divisor": scale.width_divisor,
        "image_size": scale.image_size, "fastkd_runtime": trainer.runtime.describe(), "fastkd_overrides": method.fastkd_overrides(scale),
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
    cfg = fastkd_config(method, scale, preset.device, data_root, workdir / "runs-eager", epochs, ["train.compile=off"])
    twin = FastkdRounds(Trainer(cfg, workdir / "runs-eager" / method.name, quiet=True), scale.iters_per_epoch)
    return count_flops(twin.train_epoch)


def _with_ceiling_share(row: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, Any]:
    """fastkd's achieved GFLOP/s over the ResNet-18 ceiling at the row's batch and width, and over the matmul."""
    gflops = row["fastkd_gflops"]
    key = ceiling_key(Scale(row["batch_size"], row["train_images"], row["width_divisor"]))
    resnet = None if row.get("image_size") else ceiling["resnet18"][key]  # ViT rows: no ResNet-18 ceiling
    row["ceiling_key"] = None if resnet is None else key
    row["ceiling_share"] = None if gflops is None else {
        "resnet18": None if resnet is None else gflops / resnet["best"]["gflops"],
        "matmul": gflops / ceiling["matmul"]["gflops"]}
    return row


# ================================================================================================ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu-small",
                        help="; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()))
    parser.add_argument("--methods", default="all",
                        help=f"comma-separated subset of {', '.join(BENCH_METHODS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per side (default: the preset's)")
    parser.add_argument("--out", default="runs/bench", help="results folder (results.json, results.md, *.png)")
    parser.add_argument("--nproc", default=None, metavar="N[,N...]",
                        help="instead of the comparison with the reference: data-parallel scaling of fastkd's runs, "
                             "one torchrun job per process count (1 is always included), reporting images/s per "
                             "process and the scaling efficiency; on CPU the processes share the cores")
    parser.add_argument("--sync-bn", default="auto", choices=SYNC_BN_CHOICES,
                        help="with --nproc: train.sync_bn of the runs (auto/on: batch statistics of the global batch, "
                             "one collective per batch-norm layer and pass; off: per-process statistics)")
    parser.add_argument("--projection", action="store_true",
                        help="instead of the comparison with the reference: the projected wall time of the paper's "
                             "full runs (CIFAR-100 spaced online KD, 80 epochs; DeiT-Ti spaced KD per epoch) from "
                             "timed full-size steps, in fastkd's settings and the reference's (fp32, no compile)")
    parser.add_argument("--reference-repo", action="append", default=None, metavar="DIR",
                        help="instead of the reference-style loops: the authors' own scripts, run unmodified from "
                             "your clone(s) of SunGL001/Spaced-KD and SunGL001/spacing_generalization (give both: "
                             "--reference-repo A --reference-repo B), each against `fastkd compat` with the same "
                             "flags (bench/README.md); with --nproc also fastkd under torchrun at each N > 1")
    parser.add_argument("--like-for-like", action="store_true",
                        help="with --reference-repo: also run fastkd in fp32 without torch.compile, to separate "
                             "engine gains from precision gains")
    parser.add_argument("--plan", action="store_true",
                        help="print what the preset would run and write plan.json to --out; runs nothing and needs "
                             "no GPU (bench/gpu_check.sh --cpu-dry-run checks the gpu-quick preset this way)")


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
    if preset.device == "cuda" and not torch.cuda.is_available() and not args.plan:
        raise BenchOptionError(f"--preset {preset.name} needs a CUDA device and none is visible; "
                         "use --preset cpu-small on this machine")
    return preset, [BENCH_METHODS[n] for n in dict.fromkeys(names)], rounds, out


def run(args: argparse.Namespace) -> int:
    """Run the suite; returns 0, or 1 when a method failed (its row then says why). Bad options raise
    BenchOptionError (a UsageError) with one line."""
    preset, methods, rounds, out = _resolve(args)
    nprocs = None if args.nproc is None else parse_nproc(args.nproc, preset.device)
    if args.projection and nprocs is not None:
        raise BenchOptionError("--projection and --nproc are two different reports; run them one at a time")
    if args.projection:
        projected_runs(preset)  # a preset without projection sizes is refused before anything runs
    if args.like_for_like and not args.reference_repo:
        raise BenchOptionError("--like-for-like compares fastkd's fp32 run with the authors' scripts; it needs "
                               "--reference-repo")
    if args.reference_repo:
        if args.projection or args.plan:
            raise BenchOptionError("--reference-repo is not supported with --projection or --plan; run it on its "
                                   "own")
        return run_authors(preset, methods, args.reference_repo, args.rounds, out, args.like_for_like, nprocs,
                           _write_results)
    if args.plan:
        return _print_plan(preset, methods, rounds, out, nprocs)
    if nprocs is not None:
        return run_scaling(preset, methods, rounds, nprocs, out, args.sync_bn)
    if args.projection:
        return run_projection(preset, out, _write_results)
    device = torch.device(preset.device)
    available = [m for m in methods if m.name in METHODS]
    per_method = 2 + 2 * rounds + 1
    kernel_steps = 1 if preset.kernels is not None else 0
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "preset": {k: v for k, v in asdict(preset).items() if k != "scales"},
        "rounds": rounds, "machine": machine_description(device), "methods": [],
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="fastkd-bench-") as tmp, warnings.catch_warnings(), \
            tqdm(total=1 + kernel_steps + per_method * len(available), desc="fastkd bench", unit="round",
                 dynamic_ncols=True) as progress:
        # The reference's 4 workers are the setting being measured, also on machines with fewer cores.
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        progress.set_postfix_str("machine ceiling", refresh=True)
        scales = ([preset.scales[m.name] for m in available if preset.scales[m.name].image_size is None]
                  or [preset.scales["spaced_online_kd"]])
        results["ceiling"] = measure_ceiling(preset, device, scales)
        progress.update(1)
        if preset.kernels is not None:
            progress.set_postfix_str("kernel micro-benchmarks", refresh=True)
            results["kernels"] = bench_kernels(preset.kernels, device)
            progress.update(1)
        _write_results(results, out)
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
            _write_results(results, out)
    table = _write_results(results, out)
    write_charts(results, out)
    print(table)
    print(f"results: {out / 'results.json'}, {out / 'results.md'}, {out}/*.png")
    return 1 if failed else 0


def run_scaling(preset: Preset, methods: list[BenchMethod], rounds: int, nprocs: list[int], out: Path,
                sync_bn: str = "auto") -> int:
    """`--nproc`: each method at every process count (fastkd.bench.scaling); 0, or 1 when a method failed."""
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "preset": {k: v for k, v in asdict(preset).items() if k != "scales"},
        "rounds": rounds, "machine": machine_description(torch.device(preset.device)), "nprocs": nprocs,
        "sync_bn": sync_bn,
        "scaling": [],
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="fastkd-bench-") as tmp, \
            tqdm(total=len(methods), desc="fastkd bench --nproc", unit="method", dynamic_ncols=True) as progress:
        for method in methods:
            progress.set_postfix_str(f"{method.name}: {', '.join(map(str, nprocs))} process(es)", refresh=True)
            scale = preset.scales[method.name]
            data_root = Path(tmp) / f"data-{scale.train_images}"
            if not data_root.exists():
                write_synthetic_cifar100(data_root, scale.train_images, preset.test_images)
            try:
                row = bench_scaling(method, preset, rounds, nprocs, Path(tmp), data_root, sync_bn)
            except RuntimeError as exc:  # one broken row must not lose the others; the row records why
                failed = True
                row = {"method": method.name, "status": "error", "reason": str(exc)}
            results["scaling"].append(row)
            _write_results(results, out, scaling_markdown)
            progress.update(1)
    table = _write_results(results, out, scaling_markdown)
    print(table)
    print(f"results: {out / 'results.json'}, {out / 'results.md'}")
    return 1 if failed else 0


def bench_plan(preset: Preset, methods: list[BenchMethod], rounds: int) -> dict[str, Any]:
    """What a run of `preset` does, per method: the size of a round and how many rounds each side trains."""
    return {
        "preset": preset.name, "device": preset.device, "description": preset.description,
        "rounds": {"warm-up": preset.warmup_rounds, "timed": rounds, "profiled": 1},
        "ceiling": {"matmul_size": preset.matmul_size, "steps": preset.ceiling_steps},
        "kernels": None if preset.kernels is None else asdict(preset.kernels),
        "methods": [{"method": m.name, "setting": m.setting, "reference_script": m.reference_script,
                     "batch_size": preset.scales[m.name].batch_size,
                     "iters_per_epoch": preset.scales[m.name].iters_per_epoch,
                     "width_divisor": preset.scales[m.name].width_divisor,
                     "implemented": m.name in METHODS} for m in methods],
        "projection": [] if preset.projection is None else [
            {"key": r.key, "title": r.title, "train_images": r.scale.train_images, "test_images": r.test_images,
             "measure_interval": r.measure_interval} for r in projected_runs(preset)],
    }


def _print_plan(preset: Preset, methods: list[BenchMethod], rounds: int, out: Path, nprocs: list[int] | None) -> int:
    plan = bench_plan(preset, methods, rounds)
    if nprocs is not None:
        plan["nprocs"] = nprocs
        print(f"scaling: one torchrun job per process count {nprocs} and method, {preset.warmup_rounds} warm-up + "
              f"{rounds} timed epoch(s) each, instead of the comparison with the reference")
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(plan, indent=2))
    print(f"fastkd bench --preset {preset.name} ({preset.device}): {preset.description}")
    for row in plan["methods"]:
        print(f"  {row['method']}: {row['setting']}, batch {row['batch_size']} x {row['iters_per_epoch']} iterations, "
              f"width/{row['width_divisor'] ** 0.5:g}; {preset.warmup_rounds} warm-up + {rounds} timed round(s) "
              "per side + 1 profiled fastkd round")
    if preset.kernels is not None:
        print(f"  kernels: KD loss {list(preset.kernels.kd_shapes)}, EMA {list(preset.kernels.ema_models)}, "
              f"{preset.kernels.repeats} calls per block")
    for run in plan["projection"]:
        print(f"  --projection {run['key']}: {run['title']}; timed on {run['train_images']} images, replaying every "
              f"s = {run['measure_interval']} epochs, fastkd and reference settings")
    print(f"plan: {out / 'plan.json'}")
    return 0


def _write_results(results: dict[str, Any], out: Path,
                   render: Callable[[dict[str, Any]], str] = markdown_report) -> str:
    """results.json and results.md (`render`ed) as measured so far; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    table = render(results)
    (out / "results.md").write_text(table)
    return table


def main(argv: list[str] | None = None) -> int:
    """`python -m fastkd.bench ...` (the same as `fastkd bench ...`); 2 with one line on a bad option."""
    parser = argparse.ArgumentParser(prog="fastkd bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except BenchOptionError as exc:
        print(f"fastkd bench: error: {exc}", file=sys.stderr)
        return 2
