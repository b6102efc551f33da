"""Which runs a `fastkd reproduce` invocation means: paper experiments x seeds, at full or smoke scale, each with
its run folder and the overrides applied to its configs/paper file."""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ..config import ExperimentConfig, load_config
from ..data.readers import DATASET_FOLDERS, data_root
from ..engine.checkpoint import ensure_writable_folder
from ..errors import OutputError, UsageError, first_line
from .experiments import DATASETS, FAMILIES, Experiment, experiments

Scale = Literal["full", "smoke"]

SMOKE_OVERRIDES = ("data.dataset=digits", "data.batch_size=64", "data.eval_batch_size=360",
                   "model.downsample_factor=64", "model.student_downsample_factor=64", "optim.lr=0.05",
                   "train.log_every=10")
"""`--scale smoke`: the bundled digits (no download) and ResNet-18 at width/8 (widths 8..64), as `fastkd demo`."""
VIT_SMOKE_OVERRIDES = ("data.dataset=digits", "data.image_size=32", "data.batch_size=64", "data.eval_batch_size=360",
                       "vit.model_args={depth: 1, embed_dim: 32, num_heads: 2}", "vit.teacher_img_size=32",
                       "optim.warmup_epochs=0", "train.log_every=10")
"""`--scale smoke` for the ViT family: digits upsampled to 32 px, one transformer block of width 32, no warm-up."""
SMOKE_OVERRIDES_OF = {"vit": VIT_SMOKE_OVERRIDES}
"""Smoke overrides of the families whose models SMOKE_OVERRIDES does not shrink."""
PAPER_CONFIGS = "paper"
"""The packaged configs folder of the paper experiments: a run's config is named `paper/FAMILY/DATASET/RUN.yaml`,
found in the installed package from any folder (fastkd.configs)."""
SMOKE_EPOCHS = 2
SMOKE_DATASET = "cifar100"
"""The paper experiments a smoke grid is derived from (those of each family's smoke_arch): their recipe, on digits."""


@dataclass(frozen=True)
class Run:
    """One (experiment, seed): everything the per-run entry needs, picklable for submitit."""

    family: str
    dataset: str
    """The data set it trains on (digits at smoke scale)."""
    arch: str
    variant: str
    interval: float | None
    baseline: str | None
    seed: int
    config_path: str
    overrides: tuple[str, ...]
    run_dir: str

    @property
    def id(self) -> str:
        return f"{self.family}/{self.dataset}/{self.arch}_{self.variant}/seed{self.seed}"

    def config(self) -> ExperimentConfig:
        return load_config(self.config_path, [*self.location_overrides(), *self.overrides])

    def location_overrides(self) -> list[str]:
        """name and output_dir (and a vit offline run's teacher checkpoint) from `run_dir`, so a grid folder that
        was moved or copied places its runs, and finds their teachers, where it now is."""
        run_dir = Path(self.run_dir)
        located = [f"name={run_dir.name}", f"output_dir={run_dir.parent}"]
        if self.family == "vit" and self.variant == "offline":
            located.append(f"vit.teacher_weights={teacher_run_dir(run_dir.parent, self.arch, self.seed) / 'best.pt'}")
        return located


def teacher_run_dir(output_dir: Path, arch: str, seed: int) -> Path:
    """The run folder of the ViT base run whose best.pt a vit offline run of the same grid folder distils from."""
    return output_dir / f"{arch}_base-seed{seed}"


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        seeds = ()
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text}: expected distinct whole numbers >= 0 separated by commas, e.g. --seeds 0,1,2")
    return seeds


def parse_families(text: str) -> tuple[str, ...]:
    if text == "all":
        return tuple(FAMILIES)
    names = tuple(text.split(","))
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise UsageError(f"fastkd reproduce {text}: unknown family {', '.join(unknown)}; choose all or "
                         f"{', '.join(FAMILIES)} (comma-separated for several)")
    return names


def _choice(flag: str, values: list[str] | None, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    if not values:
        return None
    chosen = tuple(v for text in values for v in text.split(","))
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        raise UsageError(f"{flag} {', '.join(unknown)}: not in the paper grid; choose from {', '.join(allowed)}")
    return chosen


def build_grid(families: tuple[str, ...], *, seeds: tuple[int, ...], out: Path, data_root: str | None,
               scale: Scale = "full", epochs: int | None = None, datasets: list[str] | None = None,
               archs: list[str] | None = None, only: str | None = None,
               extra_overrides: tuple[str, ...] = ()) -> list[Run]:
    """The runs of the selected experiments, seed-major within each experiment, in table order."""
    wanted_datasets = _choice("--dataset", datasets, DATASETS)
    wanted_archs = _choice("--arch", archs, tuple(dict.fromkeys(e.arch for e in experiments(families))))
    if scale == "smoke" and wanted_datasets:
        raise UsageError("--dataset does not apply to --scale smoke, which trains on the bundled digits; "
                         "drop --dataset, or use --scale full")
    selected: list[Experiment] = []
    for e in experiments(families):
        if scale == "smoke":
            keep = (e.dataset == SMOKE_DATASET and e.arch in (wanted_archs or (FAMILIES[e.family].smoke_arch,))
                    and e.variant in FAMILIES[e.family].smoke_variants)
        else:
            keep = (wanted_datasets is None or e.dataset in wanted_datasets) and \
                (wanted_archs is None or e.arch in wanted_archs)
        if keep and (only is None or fnmatch.fnmatch(e.path.removesuffix(".yaml"), only)):
            selected.append(e)
    if not selected:
        raise UsageError(f"no paper experiment matches {','.join(families)}"
                         + (f" --only {only}" if only else "") + "; `fastkd reproduce all --dry-run` lists them "
                         "(--only matches FAMILY/DATASET/ARCH_VARIANT, e.g. 'online_kd/cifar100/resnet18_s*')")
    run_epochs = epochs if epochs is not None else (SMOKE_EPOCHS if scale == "smoke" else None)
    runs = []
    for e in selected:
        dataset = "digits" if scale == "smoke" else e.dataset
        for seed in seeds:
            output_dir = out / e.family / dataset
            name = f"{e.arch}_{e.variant}-seed{seed}"
            scale_overrides = SMOKE_OVERRIDES_OF.get(e.family, SMOKE_OVERRIDES) if scale == "smoke" else ()
            overrides = (*scale_overrides, f"seed={seed}",
                         *([f"data.root={data_root}"] if data_root else []),
                         *([f"train.epochs={run_epochs}"] if run_epochs is not None else []), *extra_overrides)
            runs.append(Run(e.family, dataset, e.arch, e.variant, e.interval, e.baseline, seed,
                            f"{PAPER_CONFIGS}/{e.path}", overrides, str(output_dir / name)))
    return runs


def needed_data(runs: list[Run]) -> list[tuple[str, str | None]]:
    """(data set, data.root) of every on-disk data set the runs train on, once per data set and resolved root
    (the bundled digits need none)."""
    needed: dict[tuple[str, Path], tuple[str, str | None]] = {}
    for run in runs:
        data = run.config().data
        if data.dataset in DATASET_FOLDERS:
            needed.setdefault((data.dataset, data_root(data.root).path), (data.dataset, data.root))
    return list(needed.values())


GRID_FILE = "grid.json"


def record_grid(out: Path, runs: list[Run]) -> None:
    """Merge the runs into OUT/grid.json (what `--report` reads), so several invocations share one report. Run
    folders are stored relative to OUT, so the grid folder can be moved or copied as a whole."""
    path = out / GRID_FILE
    known = load_grid(out)
    known.update({run.id: run for run in runs})
    ensure_writable_folder(out, "grid folder")
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps({k: {**asdict(v), "run_dir": os.path.relpath(v.run_dir, out)}
                                   for k, v in known.items()}, indent=1))
        tmp.replace(path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the grid's record ({exc.strerror})") from None


def load_grid(out: Path) -> dict[str, Run]:
    """OUT/grid.json's runs, their folders inside OUT wherever OUT now is; a damaged file is refused in one line."""
    path = out / GRID_FILE
    if not path.is_file():
        return {}
    try:
        recorded = json.loads(path.read_text())
        return {k: Run(**{**v, "overrides": tuple(v["overrides"]), "run_dir": str(out / v["run_dir"])})
                for k, v in recorded.items()}
    except OSError as exc:
        raise OutputError(f"{path}: cannot read the grid's record ({exc.strerror})") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UsageError(f"{path}: damaged ({type(exc).__name__}: {first_line(exc)}); it lists the grid's runs: "
                         "restore it, or delete it and re-run the grid with the same options to rewrite it") from None
