"""The papers' experiments as data: every `configs/paper/**` file is generated from this table and checked against it.

Each experiment is a reference script's command line (hyper-parameters from the reference READMEs and shell scripts,
docs/semantics.md §1, §5-7); its YAML is the config `fastkd compat SCRIPT ARGV` resolves for it, written with the keys
that describe the experiment. A family (`FamilySpec`) adds what `fastkd reproduce` needs to run and report it: which
variant is the baseline of which, which are drawn as horizontal reference lines, which output is the headline number.

The ViT family is `VIT_GRID` (per data set and architecture the variants base, online, offline, s0.5..s2.0 the
reference has configs for); its files are rendered by run_net's `render_paper_config`, picked by the experiment's
script ("run_net"), so the same drift check judges them.

Regenerate the files after a change of the table or of the compat mapping with:

    python -m fastkd.reproduce.experiments            # --check only compares
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml

from ..config.methods import get_method
from ..reference.compat import resolve
from ..reference.run_net import paper_reference_values, reference_file, render_paper_config

DATASETS = ("cifar100", "tiny_imagenet")
ARCHS = ("resnet18", "resnet50", "resnet101")
GENERATOR = "python -m fastkd.reproduce.experiments"


@dataclass(frozen=True)
class Experiment:
    family: str
    dataset: str
    arch: str
    variant: str
    """Column name in the report: nokd, online, s0.5, offline, s0.0, standard, spaced_s1.0, ..."""
    interval: float | None
    """The spacing s (epochs) for the accuracy-vs-s plot; None for variants without one (no KD, offline, dropout)."""
    baseline: str | None
    """The variant this one's gain is measured against (its online/self/unspaced twin); None for baselines."""
    script: str
    argv: tuple[str, ...]
    """The reference script's command line."""
    comment: str
    overrides: tuple[str, ...] = ()
    """fastkd `--set` values for what the reference has no switch for (the no-KD baseline)."""

    @property
    def path(self) -> str:
        """configs/paper/<family>/<dataset>/<arch>_<variant>.yaml, relative to configs/paper."""
        return f"{self.family}/{self.dataset}/{self.arch}_{self.variant}.yaml"

    @property
    def name(self) -> str:
        return "paper-" + self.path.removesuffix(".yaml").replace("/", "-")

    def compat_argv(self) -> list[str]:
        """The full `fastkd compat` argv: data.root stays unset in the committed files (pass data.root=DIR)."""
        return [*self.argv, "--set", f"name={self.name}", "data.root=null", *self.overrides]


@dataclass(frozen=True)
class FamilySpec:
    name: str
    title: str
    build: Callable[[], list[Experiment]]
    headline_output: str
    """The evaluated output whose top-1 the report tabulates (summary.json `<output>_best_top1`)."""
    extra_outputs: tuple[str, ...] = ()
    """Further outputs with their own report columns (self KD's exits)."""
    reference_lines: tuple[str, ...] = ()
    """Variants drawn as horizontal lines in the accuracy-vs-s plot (no KD, offline KD)."""
    smoke_variants: tuple[str, ...] = ()
    """The two variants `--scale smoke` runs: the baseline and one spaced variant."""
    smoke_arch: str = "resnet18"
    """The architecture whose CIFAR-100 experiments a smoke grid trains (on digits, shrunk)."""


def _online_kd() -> list[Experiment]:
    variants = [("nokd", None, None, ("method=no_kd",),
                 "no-KD baseline: the student alone, same recipe and optimizer", 0.0),
                ("online", 0.0, None, (), "online KD (s = 0): the student steps right after the teacher", 0.0),
                *[(f"s{s}", s, "online", (), f"Spaced KD, s = {s} epochs", s) for s in (0.5, 1.0, 1.5, 2.0)],
                ("offline", None, None, (), "offline KD: -interval_rate >= 50 trains the teacher first "
                 "(docs/semantics.md §5.2)", 100.0)]
    out = []
    for dataset in DATASETS:
        for arch in ARCHS:
            for variant, interval, baseline, overrides, comment, rate in variants:
                argv = ("-gpu_ids", "0", "-net_teacher", arch, "-net_student", arch, "-alpha", "0.3", "-temp", "3.0",
                        "-lr", "0.01", "-interval_rate", str(rate), "-b", "128", "-gpu", "-dataset", dataset)
                out.append(Experiment("online_kd", dataset, arch, variant, interval, baseline, "train_space", argv,
                                      comment, overrides))
    return out


def _self_kd() -> list[Experiment]:
    out = []
    for dataset in DATASETS:
        for arch in ARCHS:
            for rate in (0.0, 0.5, 1.0, 1.5, 2.0, 4.0):
                comment = ("self KD without spacing (s = 0): distillation at every iteration" if rate == 0 else
                           f"Spaced self KD, s = {rate} epochs" + (" (the README's)" if rate == 4.0 else ""))
                argv = ("--gpu_ids", "0", "--model", arch, "--interval_rate", str(rate), "--dataset", dataset)
                out.append(Experiment("self_kd", dataset, arch, f"s{rate}", rate, "s0.0" if rate else None, "self_kd",
                                      argv, comment))
    return out


def _ema() -> list[Experiment]:
    comments = {0.0: "EMA at every iteration (s = 0)", 0.1: "Spaced EMA, s = 0.1 epochs (the README's)",
                1.0: "Spaced EMA, s = 1 epoch (the script's default interval)"}
    out = []
    for dataset in DATASETS:
        for arch in ARCHS:
            for interval, comment in comments.items():
                argv = ("-gpu_ids", "0", "-net", arch, "-dataset", dataset, "-interval", str(interval),
                        "-alpha", "0.99", "-epoch", "80", "-lr", "0.01", "-gpu")
                out.append(Experiment("ema", dataset, arch, f"s{interval}", interval, "s0.0" if interval else None,
                                      "ema", argv, comment))
    return out


def _dropout() -> list[Experiment]:
    variants = [("standard", "StandardDropout", 0.0, None, "standard dropout, constant rate (the README's first line)"),
                ("max", "MaxDropout", 0.0, None, "MaxDropout, constant rate"),
                ("spaced_s1.0", "SpacedDropout", 1.0, "standard",
                 "Spaced dropout, period 1 epoch (the README's second line)"),
                ("maxspaced_s1.0", "MaxSpacedDropout", 1.0, "max", "Spaced MaxDropout, period 1 epoch")]
    out = []
    for dataset in DATASETS:
        for arch in ARCHS:
            for variant, method, space, baseline, comment in variants:
                if space and dataset == "tiny_imagenet":
                    comment += ("; on Tiny-ImageNet S = int(1.0 * 782) >= 500 iterations selects the reference's "
                                "random-rate variant (docs/semantics.md §7)")
                argv = ("--gpu_ids", "0", "--model", arch, "--drop_method", method, "--epochs", "80", "--drop", "0.5",
                        "--dataset", dataset, "--space", str(space))
                out.append(Experiment("dropout", dataset, arch, variant, None, baseline, "dropout", argv, comment))
    return out


_VIT_VARIANTS = ("base", "online", "offline", "s0.5", "s1.0", "s1.5", "s2.0")
VIT_GRID: dict[str, dict[str, tuple[str, ...]]] = {
    "cifar100": {"deit_tiny": _VIT_VARIANTS, "pit_ti": _VIT_VARIANTS, "pvt_tiny": _VIT_VARIANTS,
                 "pvt_v2_b0": _VIT_VARIANTS, "t2t_vit_7": _VIT_VARIANTS[:5], "t2t_vit_14": ("base",),
                 "convit_tiny": ("base",), "cvt_13": ("base",)},
    "tiny_imagenet": {"deit_tiny": _VIT_VARIANTS, "pit_ti": _VIT_VARIANTS},
}
"""The reference's ViT experiments with logit KD or none (vit/configs/**; the "ours" ResNet-teacher variants use
DISTILLATION.ENABLE_INTER, which fastkd refuses)."""


def _vit() -> list[Experiment]:
    out = []
    for dataset, architectures in VIT_GRID.items():
        for arch, variants in architectures.items():
            for variant in variants:
                spaced = variant.startswith("s")
                # the interval the config runs: PiT's s1.5 and s2.0 reference files set 1.0 (kept as written)
                written = paper_reference_values(dataset, arch, variant).get("DISTILLATION.SPACE_INTERVAL")
                interval = written if spaced else 0.0 if variant == "online" else None
                out.append(Experiment("vit", dataset, arch, variant, interval, "online" if spaced else None,
                                      "run_net", ("--cfg", reference_file(dataset, arch, variant)),
                                      f"ViT {arch} {variant} on {dataset}"))
    return out


FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in (
    FamilySpec("online_kd", "Spaced online KD (ICML 2025)", _online_kd, "student",
               reference_lines=("nokd", "offline"), smoke_variants=("online", "s1.0")),
    FamilySpec("self_kd", "Spaced self KD (ICML 2025)", _self_kd, "ensemble",
               extra_outputs=("exit1", "exit2", "exit3", "exit4"), smoke_variants=("s0.0", "s1.0")),
    FamilySpec("ema", "Spaced EMA (PNAS)", _ema, "ema", extra_outputs=("model",), smoke_variants=("s0.0", "s1.0")),
    FamilySpec("dropout", "Spaced dropout (PNAS)", _dropout, "model", smoke_variants=("standard", "spaced_s1.0")),
    FamilySpec("vit", "Spaced KD for vision transformers (ICML 2025)", _vit, "student",
               reference_lines=("base", "offline"), smoke_variants=("base", "s1.0"), smoke_arch="deit_tiny"),
)}


def experiments(families: tuple[str, ...] | None = None) -> list[Experiment]:
    """Every paper experiment of `families` (all by default), in table order."""
    return [e for name, spec in FAMILIES.items() if families is None or name in families for e in spec.build()]


_OPTIM_KEYS = ("name", "lr", "momentum", "nesterov", "weight_decay", "schedule")


def experiment_dict(cfg) -> dict[str, Any]:
    """The keys that describe an experiment, in reading order."""
    full = cfg.model_dump(mode="json")
    spec = get_method(cfg.method)
    optim_keys = _OPTIM_KEYS + (("milestones", "gamma") if cfg.optim.schedule == "multistep" else ())
    return {
        "name": cfg.name, "method": cfg.method, "semantics": cfg.semantics, "seed": cfg.seed,
        "data": {k: full["data"][k] for k in ("dataset", "root", "batch_size", "eval_batch_size")},
        "model": {k: full["model"][k] for k in spec.model_keys},
        spec.section: full[spec.section],
        "optim": {k: full["optim"][k] for k in optim_keys},
        "train": {"epochs": cfg.train.epochs},
    }


def resolve_config(experiment: Experiment):
    """The config the compat mapping gives the experiment's reference command line."""
    return resolve(experiment.script, experiment.compat_argv()).config


def render(experiment: Experiment) -> str:
    """The YAML text of the experiment's configs/paper file (run_net's own renderer for the ViT grid)."""
    if experiment.script == "run_net":
        return render_paper_config(experiment.dataset, experiment.arch, experiment.variant)
    reference = f"{experiment.script} {shlex.join(experiment.argv)}"
    fastkd_flags = shlex.join(experiment.compat_argv()[len(experiment.argv):])
    header = [
        f"# {experiment.comment}.",
        f"# Reference command line: {reference}",
        f"# Generated by {GENERATOR}: fastkd compat {reference} {fastkd_flags}",
        f"# Train: fastkd train configs/paper/{experiment.path} data.root=DIR",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(experiment_dict(resolve_config(experiment)), sort_keys=False)


def paper_dir() -> Path:
    """configs/paper of the installed package (the repository's folder in an editable install)."""
    return Path(str(resources.files("fastkd.configs") / "paper"))


def drifted(folder: Path | None = None) -> list[str]:
    """Paths (relative to configs/paper) that differ from the table, are missing, or lie in a family's folder
    without belonging to an experiment."""
    folder = folder or paper_dir()
    table = {e.path: e for e in experiments()}
    on_disk = {str(p.relative_to(folder)) for family in FAMILIES for p in (folder / family).rglob("*.yaml")}
    out = sorted(on_disk - table.keys())
    for path, experiment in table.items():
        target = folder / path
        if not target.is_file() or target.read_text() != render(experiment):
            out.append(path)
    return out


def write_all(folder: Path | None = None) -> int:
    """(Re)write every file that differs from the table; returns how many were written."""
    folder = folder or paper_dir()
    written = 0
    for experiment in experiments():
        target = folder / experiment.path
        text = render(experiment)
        if not target.exists() or target.read_text() != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            written += 1
    return written


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        stale = drifted()
        for path in stale:
            print(f"configs/paper/{path}: differs from the experiment table; regenerate with {GENERATOR}")
        return 1 if stale else 0
    if argv:
        print(f"usage: {GENERATOR} [--check]", file=sys.stderr)
        return 2
    print(f"{write_all()} of {len(experiments())} files under {paper_dir()} (re)written")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
