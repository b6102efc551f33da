"""`fastkd bench --reference-repo DIR`: fastkd against the authors' own scripts, run unmodified from the user's clones.

Per row the authors' script runs in a subprocess under the runtime shim (`authors_shim/sitecustomize.py`: wandb as a
no-op, their absolute data paths redirected, `.cuda()` on the CPU when there is no GPU, an iteration cap with
per-iteration timestamps), then `fastkd compat` with the same flags under the same shim's clock, on the same
synthetic CIFAR-100 files, interleaved round by round. Each run starts in a fresh folder of the bench's temporary
directory (their checkpoints, logs and wandb folders land there) with PYTHONDONTWRITEBYTECODE set, so nothing is
written into the clone. fastkd never ships the authors' code: it reads the clone's commit with git and records it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from ..engine.distributed import cpu_threads_per_process, standalone_launch
from .charts import write_authors_chart
from .data import write_synthetic_cifar100
from .presets import AuthorsScale, BenchMethod, BenchOptionError, Preset
from .report import authors_markdown, machine_description

SHIM_DIR = Path(__file__).resolve().parent / "authors_shim"
"""Put first on the subprocesses' PYTHONPATH: Python imports its sitecustomize.py at start-up."""
SIDE_TIMEOUT_S = 900
"""One subprocess run (start-up and the capped iterations); a hung script fails its row, not the suite."""


@dataclass(frozen=True)
class AuthorsScript:
    """How one row drives an authors' script and the `fastkd compat` command with the same flags."""

    path: str
    """The script inside the clone."""
    repository: str
    """The GitHub repository that has it (for error messages)."""
    compat: str
    """`fastkd compat SCRIPT`."""
    flags: Callable[[AuthorsScale, Path, Path], list[str]]
    """(scale, clone, data root) -> the script's command-line flags, spelled as the script spells them."""


def _online_kd_flags(rate: Callable[[AuthorsScale], float]):
    def flags(scale: AuthorsScale, clone: Path, data: Path) -> list[str]:
        return ["-net_teacher", "resnet18", "-net_student", "resnet18", "-b", str(scale.batch_size), "-lr", "0.01",
                "-interval_rate", str(rate(scale)), "-dataset", "cifar100"]
    return flags


def _self_kd_flags(scale: AuthorsScale, clone: Path, data: Path) -> list[str]:
    return ["--model", "resnet18", "--interval_rate", str(scale.interval), "--batchsize", str(scale.batch_size),
            "--init_lr", "0.01", "--dataset", "cifar100", "--dataset_path", str(data)]


def _ema_flags(scale: AuthorsScale, clone: Path, data: Path) -> list[str]:
    return ["-net", "resnet18", "-b", str(scale.batch_size), "-lr", "0.01", "-interval", str(scale.interval),
            "-alpha", "0.999", "-dataset", "cifar100"]


def _dropout_flags(scale: AuthorsScale, clone: Path, data: Path) -> list[str]:
    return ["--model", "resnet18", "--drop_method", "SpacedDropout", "--drop", "0.5", "--space", str(scale.interval),
            "--dataset", "cifar100", "--batch_size", str(scale.batch_size), "--learning_rate", "0.01"]


VIT_CONFIG = "vit/configs/deit/deit-ti_c100_space_1_0.yaml"


def _vit_flags(scale: AuthorsScale, clone: Path, data: Path) -> list[str]:
    """PREC_TIME.NUM_ITER 0: pycls otherwise times 30 forward, 30 training and 30 loader iterations before it
    trains (a one-off start-up pass outside training, which fastkd compat ignores)."""
    size = str(scale.vit_image_size)
    return ["--mode", "train", "--cfg", str(clone / VIT_CONFIG), "NUM_GPUS", "1",
            "TRAIN.BATCH_SIZE", str(scale.batch_size), "MODEL.IMG_SIZE", size, "DISTILLATION.TEACHER_IMG_SIZE", size,
            "DISTILLATION.SPACE_INTERVAL", str(scale.interval), "PREC_TIME.NUM_ITER", "0"]


SPACED_KD, SPACING_GENERALIZATION = "SunGL001/Spaced-KD", "SunGL001/spacing_generalization"
AUTHORS_SCRIPTS: dict[str, AuthorsScript] = {
    "spaced_online_kd": AuthorsScript("online_KD/train_space.py", SPACED_KD, "train_space",
                                      _online_kd_flags(lambda scale: scale.interval)),
    "online_kd": AuthorsScript("online_KD/train_space.py", SPACED_KD, "train_space", _online_kd_flags(lambda _: 0.0)),
    "spaced_self_kd": AuthorsScript("self_KD/train.py", SPACED_KD, "self_kd", _self_kd_flags),
    "spaced_ema": AuthorsScript("online_KD/train_EMA.py", SPACING_GENERALIZATION, "ema", _ema_flags),
    "spaced_dropout": AuthorsScript("dropout/train.py", SPACING_GENERALIZATION, "dropout", _dropout_flags),
    "vit_spaced_kd": AuthorsScript("vit/run_net.py", SPACED_KD, "run_net", _vit_flags),
}
"""The rows `--reference-repo` can run, keyed by the bench method they measure."""
LIKE_FOR_LIKE_SET = ("train.amp=off", "train.compile=off")
"""`--like-for-like`: fastkd once more in fp32 without torch.compile (engine gains apart from precision gains)."""


@dataclass(frozen=True)
class Clone:
    path: Path
    commit: str
    dirty: bool
    """`git status --porcelain` was not empty: the clone has local changes (recorded, not refused)."""


def _git(path: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise BenchOptionError(f"--reference-repo needs git to read the clone's commit ({exc.strerror}: git)") from None


def read_clone(directory: str) -> Clone:
    """A `--reference-repo` folder: it must be the top of a git work tree; its HEAD commit is recorded."""
    path = Path(directory).expanduser().resolve()
    if not path.is_dir():
        raise BenchOptionError(f"--reference-repo {directory}: no such folder; give a clone of {SPACED_KD} or "
                               f"{SPACING_GENERALIZATION}")
    top = _git(path, "rev-parse", "--show-toplevel")
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != path:
        raise BenchOptionError(f"--reference-repo {directory}: not a git repository (clone it with git clone "
                               f"https://github.com/{SPACED_KD}, or {SPACING_GENERALIZATION})")
    commit = _git(path, "rev-parse", "HEAD")
    if commit.returncode != 0:
        raise BenchOptionError(f"--reference-repo {directory}: the git repository has no commit")
    return Clone(path, commit.stdout.strip(), bool(_git(path, "status", "--porcelain").stdout.strip()))


def assign_clones(methods: list[BenchMethod], clones: list[Clone]) -> dict[str, Clone]:
    """The clone that holds each row's script (the first given that has it); one line when none has it."""
    assigned = {}
    for method in methods:
        script = AUTHORS_SCRIPTS.get(method.name)
        if script is None:
            raise BenchOptionError(f"--reference-repo: no authors' script is driven for {method.name}; choose "
                                   f"--methods from {', '.join(AUTHORS_SCRIPTS)}")
        clone = next((c for c in clones if (c.path / script.path).is_file()), None)
        if clone is None:
            given = ", ".join(str(c.path) for c in clones)
            raise BenchOptionError(f"--reference-repo: {script.path} (row {method.name}) is in none of {given}; add "
                                   f"a clone of {script.repository} or leave the row out with --methods")
        assigned[method.name] = clone
    return assigned


# ================================================================================================ one run
@dataclass
class SideRun:
    """One subprocess run of one side, as its shim reported it."""

    images_per_s: float
    first_n_seconds: float
    """From the subprocess's launch to the end of the capped iterations: start-up, data and model building
    included."""
    iteration_seconds: list[float]
    host_rss_peak_mb: float
    device_peak_mb: float | None


class AuthorsRunError(RuntimeError):
    """A side's subprocess failed; the message is one line (the row records it, the other rows still run)."""


def run_side(command: SideCommand, *, side: str, workdir: Path, data_root: Path, scale: AuthorsScale,
             synthetic_data: bool) -> SideRun:
    """Run `command` in the fresh folder `workdir` under the shim; parse what the shim wrote (rank 0's, under
    torchrun)."""
    workdir.mkdir(parents=True)
    if side == "reference":
        (workdir / "data").symlink_to(data_root, target_is_directory=True)  # pycls reads ./data (its _DATA_DIR)
    out = workdir / "shim.json"
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(SHIM_DIR), *filter(None, [env.get("PYTHONPATH")])]),
        # No bytecode is written, so none lands in the clone. (PYTHONPYCACHEPREFIX would keep it out too, but makes
        # Python read every module's cache from the prefix only: each process would recompile torch, ~7 s here.)
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
        "FASTKD_SHIM_OUT": str(out), "FASTKD_SHIM_SIDE": "fastkd" if side.startswith("fastkd") else "reference",
        "FASTKD_SHIM_WARMUP": str(scale.warmup_iterations), "FASTKD_SHIM_ITERATIONS": str(scale.iterations),
        "FASTKD_SHIM_DATA_ROOT": str(data_root), "FASTKD_SHIM_SCRATCH": str(workdir),
        "FASTKD_SHIM_SYNTHETIC_DATA": "1" if synthetic_data else "0",
    })
    env.update(command.env)
    env.pop("WANDB_MODE", None)
    with open(workdir / "stdout.log", "w") as stdout, open(workdir / "stderr.log", "w") as stderr:
        launched = time.monotonic()
        try:
            result = subprocess.run(command.argv, cwd=workdir, env=env, stdout=stdout, stderr=stderr,
                                    stdin=subprocess.DEVNULL, timeout=SIDE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AuthorsRunError(f"{side}: no result within {SIDE_TIMEOUT_S} s (logs: {workdir})") from None
    if result.returncode != 0 or not out.is_file():
        lines = [line for line in (workdir / "stderr.log").read_text(errors="replace").splitlines() if line.strip()]
        last = lines[-1].strip() if lines else "(no output on stderr)"
        ended = (f"exited with status {result.returncode}" if result.returncode != 0 else
                 f"ended before {scale.iterations} training iterations")
        raise AuthorsRunError(f"{side} {ended}: {last[:300]}")
    shim = json.loads(out.read_text())
    stamps = shim["stamps"]
    timed = stamps[scale.iterations] - stamps[scale.warmup_iterations]
    return SideRun(images_per_s=(scale.iterations - scale.warmup_iterations) * scale.batch_size / timed,
                   first_n_seconds=stamps[scale.iterations] - launched,
                   iteration_seconds=[b - a for a, b in zip(stamps, stamps[1:])],
                   host_rss_peak_mb=shim["host_rss_peak_mb"], device_peak_mb=shim["device_peak_mb"])


@dataclass(frozen=True)
class SideCommand:
    argv: list[str]
    env: dict[str, str]
    """Set on top of the bench's environment (OMP_NUM_THREADS of processes that share the CPU's cores)."""


def side_commands(method: str, scale: AuthorsScale, clone: Path, data_root: Path, like_for_like: bool,
                  nprocs: tuple[int, ...] = (1,)) -> dict[str, SideCommand]:
    """The command line of each side: the authors' script, `fastkd compat` with the same flags (in fp32 without
    compile under --like-for-like; under torchrun for each `--nproc` N > 1, the same global batch)."""
    script = AUTHORS_SCRIPTS[method]
    flags = script.flags(scale, clone, data_root)
    compat = ["-m", "fastkd", "compat", script.compat, *flags, "--data-root", str(data_root), "--quiet"]
    commands = {"reference": SideCommand([sys.executable, str(clone / script.path), *flags], {}),
                "fastkd": SideCommand([sys.executable, *compat], {})}
    if like_for_like:
        commands["fastkd_fp32"] = SideCommand([sys.executable, *compat, "--set", *LIKE_FOR_LIKE_SET], {})
    for n in nprocs:
        if n > 1:
            threads = {} if torch.cuda.is_available() else {"OMP_NUM_THREADS": str(cpu_threads_per_process(n))}
            commands[f"fastkd_nproc{n}"] = SideCommand([*standalone_launch(n), *compat], threads)
    return commands


def _shown(command: list[str]) -> list[str]:
    """A side's command line as a user types it (`python SCRIPT ...`, `fastkd compat ...`, `torchrun ...`)."""
    if command[1:3] == ["-m", "fastkd"]:
        return ["fastkd", *command[3:]]
    if command[1:3] == ["-m", "torch.distributed.run"]:
        return ["torchrun", *command[3:]]
    return ["python", *command[1:]]


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_authors_row(method: BenchMethod, scale: AuthorsScale, clone: Clone, rounds: int, warmup_rounds: int,
                      workdir: Path, like_for_like: bool, nprocs: tuple[int, ...],
                      progress: Callable[[str], None]) -> dict[str, Any]:
    """Warm-up rounds, then `rounds` interleaved rounds (reference, fastkd[, fastkd fp32][, fastkd under torchrun])
    of one row."""
    data_root = workdir / f"data-{scale.train_images}"
    if not data_root.exists():
        write_synthetic_cifar100(data_root, scale.train_images, scale.test_images)
    commands = side_commands(method.name, scale, clone.path, data_root, like_for_like, nprocs)
    runs: dict[str, list[SideRun]] = {side: [] for side in commands}
    for r in range(warmup_rounds + rounds):
        label = f"warm-up {r + 1}" if r < warmup_rounds else f"round {r - warmup_rounds + 1}/{rounds}"
        for side, command in commands.items():
            progress(f"{method.name}: {side} {label}")
            run = run_side(command, side=side, workdir=workdir / method.name / f"{side}-{r}", data_root=data_root,
                           scale=scale, synthetic_data=True)
            if r >= warmup_rounds:
                runs[side].append(run)
    sides = {side: {"images_per_s": [r.images_per_s for r in rs],
                    "median_images_per_s": statistics.median(r.images_per_s for r in rs),
                    "first_n_seconds": [r.first_n_seconds for r in rs],
                    "median_first_n_seconds": statistics.median(r.first_n_seconds for r in rs),
                    "host_rss_peak_mb": max(r.host_rss_peak_mb for r in rs),
                    "device_peak_mb": None if rs[0].device_peak_mb is None else max(r.device_peak_mb for r in rs),
                    "iteration_seconds": [r.iteration_seconds for r in rs]}
             for side, rs in runs.items()}
    ratios = {side: [f / r for f, r in zip(sides[side]["images_per_s"], sides["reference"]["images_per_s"])]
              for side in sides if side != "reference"}
    script = AUTHORS_SCRIPTS[method.name]
    return {
        "method": method.name, "status": "ok", "script": script.path, "repository": script.repository,
        "clone": {"path": str(clone.path), "commit": clone.commit, "dirty": clone.dirty},
        "commands": {side: _shown(command.argv) for side, command in commands.items()},
        "batch_size": scale.batch_size, "train_images": scale.train_images, "interval": scale.interval,
        "iterations": scale.iterations, "warmup_iterations": scale.warmup_iterations, "sides": sides,
        "speedup": {side: {"per_round": values, **_spread(values)} for side, values in ratios.items()},
    }


# ================================================================================================ the suite
def run_authors(preset: Preset, methods: list[BenchMethod], directories: list[str], rounds: int | None, out: Path,
                like_for_like: bool, nprocs: list[int] | None, write: Callable[..., str]) -> int:
    """The `--reference-repo` report: one row per method; 0, or 1 when a row failed (it says why)."""
    if preset.authors is None:
        raise BenchOptionError(f"--preset {preset.name} has no sizes for --reference-repo")
    scale = preset.authors
    clones = [read_clone(d) for d in directories]
    assigned = assign_clones(methods, clones)
    rounds = scale.rounds if rounds is None else rounds
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "preset": {"name": preset.name},
        "rounds": rounds, "warmup_rounds": scale.warmup_rounds, "like_for_like": like_for_like,
        "nprocs": nprocs or [1],
        "machine": machine_description(torch.device(preset.device)),
        "clones": [{"path": str(c.path), "commit": c.commit, "dirty": c.dirty} for c in clones], "authors": [],
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="fastkd-bench-authors-") as tmp, \
            tqdm(total=len(methods), desc="fastkd bench --reference-repo", unit="row", dynamic_ncols=True) as bar:
        for method in methods:
            try:
                row = bench_authors_row(method, scale, assigned[method.name], rounds, scale.warmup_rounds, Path(tmp),
                                        like_for_like, tuple(nprocs or [1]),
                                        lambda text: bar.set_postfix_str(text, refresh=True))
            except AuthorsRunError as exc:  # one broken row must not lose the others; the row records why
                failed = True
                clone = assigned[method.name]
                row = {"method": method.name, "status": "error", "reason": str(exc),
                       "script": AUTHORS_SCRIPTS[method.name].path,
                       "clone": {"path": str(clone.path), "commit": clone.commit, "dirty": clone.dirty}}
            results["authors"].append(row)
            write(results, out, authors_markdown)
            bar.update(1)
    table = write(results, out, authors_markdown)
    write_authors_chart(results, out)
    print(table)
    print(f"results: {out / 'results.json'}, {out / 'results.md'}, {out / 'authors.png'}")
    return 1 if failed else 0
