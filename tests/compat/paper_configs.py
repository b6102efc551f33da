"""The paper's experiments as reference command lines; `configs/paper/**` is generated from this table.

Each committed YAML is the config `fastkd compat SCRIPT ARGV` resolves for its experiment's command line
(hyper-parameters from the seeds' READMEs and shell scripts, spec 0 and 4-6), written with the keys that
describe the experiment. `test_paper_configs.py` checks every file against this table, so the YAML cannot drift
from the compat mapping. Regenerate after a mapping change with:

    .venv/bin/python tests/compat/paper_configs.py
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PAPER_DIR = REPO / "configs" / "paper"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATASETS = ("cifar100", "tiny_imagenet")
MODELS = ("resnet18", "resnet50", "resnet101")


@dataclass(frozen=True)
class PaperExperiment:
    path: str
    """configs/paper/<method>/<dataset>/<model>_<variant>.yaml, relative to configs/paper."""
    script: str
    argv: tuple[str, ...]
    """The reference script's command line (README hyper-parameters)."""
    overrides: tuple[str, ...] = ()
    """fastkd `--set` values for what the reference has no switch for (the no-KD baseline)."""
    comment: str = ""

    @property
    def name(self) -> str:
        return "paper-" + self.path.removesuffix(".yaml").replace("/", "-")

    def compat_argv(self) -> list[str]:
        """The full `fastkd compat` argv: data.root stays unset in the committed files (pass data.root=DIR)."""
        return [*self.argv, "--set", f"name={self.name}", "data.root=null", *self.overrides]


def _online_kd() -> list[PaperExperiment]:
    variants = [("nokd", 0.0, ("method=no_kd",), "no-KD baseline: the student alone, same recipe and optimizer"),
                ("online", 0.0, (), "online KD (s = 0): the student steps right after the teacher"),
                *[(f"s{s}", s, (), f"Spaced KD, s = {s} epochs") for s in (0.5, 1.0, 1.5, 2.0)],
                ("offline", 100.0, (), "offline KD: -interval_rate >= 50 trains the teacher first (spec 4.2)")]
    out = []
    for dataset in DATASETS:
        for model in MODELS:
            for variant, rate, overrides, comment in variants:
                argv = ("-gpu_ids", "0", "-net_teacher", model, "-net_student", model, "-alpha", "0.3", "-temp", "3.0",
                        "-lr", "0.01", "-interval_rate", str(rate), "-b", "128", "-gpu", "-dataset", dataset)
                out.append(PaperExperiment(f"online_kd/{dataset}/{model}_{variant}.yaml", "train_space", argv,
                                           overrides, comment))
    return out


def _self_kd() -> list[PaperExperiment]:
    out = []
    for dataset in DATASETS:
        for model in MODELS:
            for rate in (0.0, 0.5, 1.0, 1.5, 2.0, 4.0):
                comment = ("self KD without spacing (s = 0): distillation at every iteration" if rate == 0 else
                           f"Spaced self KD, s = {rate} epochs" + (" (the README's)" if rate == 4.0 else ""))
                argv = ("--gpu_ids", "0", "--model", model, "--interval_rate", str(rate), "--dataset", dataset)
                out.append(PaperExperiment(f"self_kd/{dataset}/{model}_s{rate}.yaml", "self_kd", argv, (), comment))
    return out


def _ema() -> list[PaperExperiment]:
    comments = {0.0: "EMA at every iteration (s = 0)", 0.1: "Spaced EMA, s = 0.1 epochs (the README's)",
                1.0: "Spaced EMA, s = 1 epoch (the script's default interval)"}
    out = []
    for dataset in DATASETS:
        for model in MODELS:
            for interval, comment in comments.items():
                argv = ("-gpu_ids", "0", "-net", model, "-dataset", dataset, "-interval", str(interval),
                        "-alpha", "0.99", "-epoch", "80", "-lr", "0.01", "-gpu")
                out.append(PaperExperiment(f"ema/{dataset}/{model}_s{interval}.yaml", "ema", argv, (), comment))
    return out


def _dropout() -> list[PaperExperiment]:
    variants = [("standard", "StandardDropout", 0.0, "standard dropout, constant rate (the README's first line)"),
                ("max", "MaxDropout", 0.0, "MaxDropout, constant rate"),
                ("spaced_s1.0", "SpacedDropout", 1.0, "Spaced dropout, period 1 epoch (the README's second line)"),
                ("maxspaced_s1.0", "MaxSpacedDropout", 1.0, "Spaced MaxDropout, period 1 epoch")]
    out = []
    for dataset in DATASETS:
        for model in MODELS:
            for variant, method, space, comment in variants:
                if space and dataset == "tiny_imagenet":
                    comment += ("; on Tiny-ImageNet S = int(1.0 * 782) >= 500 iterations selects the reference's "
                                "random-rate variant (quirk 20)")
                argv = ("--gpu_ids", "0", "--model", model, "--drop_method", method, "--epochs", "80", "--drop", "0.5",
                        "--dataset", dataset, "--space", str(space))
                out.append(PaperExperiment(f"dropout/{dataset}/{model}_{variant}.yaml", "dropout", argv, (), comment))
    return out


def experiments() -> list[PaperExperiment]:
    return _online_kd() + _self_kd() + _ema() + _dropout()


# Sections each method family reads (the others keep their defaults and are left out of the files).
_FAMILY_SECTION = {"no_kd": "kd", "online_kd": "kd", "spaced_online_kd": "kd", "offline_kd": "kd", "self_kd": "kd",
                   "spaced_self_kd": "kd", "ema": "ema", "spaced_ema": "ema", "dropout": "dropout",
                   "spaced_dropout": "dropout"}
_OPTIM_KEYS = ("name", "lr", "momentum", "nesterov", "weight_decay", "schedule")


def experiment_dict(cfg) -> dict[str, Any]:
    """The keys that describe an experiment, in reading order."""
    full = cfg.model_dump(mode="json")
    two_nets = cfg.method in ("online_kd", "spaced_online_kd", "offline_kd")
    model_keys = ("teacher", "student", "downsample_factor") if two_nets else ("student",)
    optim_keys = _OPTIM_KEYS + (("milestones", "gamma") if cfg.optim.schedule == "multistep" else ())
    section = _FAMILY_SECTION[cfg.method]
    return {
        "name": cfg.name, "method": cfg.method, "semantics": cfg.semantics, "seed": cfg.seed,
        "data": {k: full["data"][k] for k in ("dataset", "root", "batch_size", "eval_batch_size")},
        "model": {k: full["model"][k] for k in model_keys},
        section: full[section],
        "optim": {k: full["optim"][k] for k in optim_keys},
        "train": {"epochs": cfg.train.epochs},
    }


def render(experiment: PaperExperiment) -> str:
    from fastkd.compat import resolve

    cfg = resolve(experiment.script, experiment.compat_argv(), environ={}).config
    reference = f"{experiment.script} {shlex.join(experiment.argv)}"
    fastkd_flags = shlex.join(experiment.compat_argv()[len(experiment.argv):])
    header = [
        f"# {experiment.comment}.",
        f"# Reference command line: {reference}",
        f"# Generated by tests/compat/paper_configs.py: fastkd compat {reference} {fastkd_flags}",
        f"# Train: fastkd train configs/paper/{experiment.path} data.root=DIR",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(experiment_dict(cfg), sort_keys=False)


def write_all() -> int:
    written = 0
    for experiment in experiments():
        target = PAPER_DIR / experiment.path
        target.parent.mkdir(parents=True, exist_ok=True)
        text = render(experiment)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            written += 1
    return written


if __name__ == "__main__":
    print(f"{write_all()} of {len(experiments())} files under {PAPER_DIR} (re)written")
