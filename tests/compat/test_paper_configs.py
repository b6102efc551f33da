"""configs/paper/**: one file per paper experiment, equal to the compat mapping of its reference command line,
and `fastkd plan` works on each (methods without an implementation yet are skipped until they land)."""

from __future__ import annotations

import pytest
from paper_configs import PAPER_DIR, experiment_dict, experiments, render

from fastkd.runs import build_plan
from fastkd.reference.compat import resolve
from fastkd.config import load_config

EXPERIMENTS = experiments()
IDS = [e.path for e in EXPERIMENTS]


def test_every_paper_file_belongs_to_an_experiment():
    on_disk = sorted(str(p.relative_to(PAPER_DIR)) for p in PAPER_DIR.rglob("*.yaml")
                     if p.relative_to(PAPER_DIR).parts[0] != "vit")  # the ViT grid: tests/compat/test_run_net.py
    assert on_disk == sorted(IDS), "run `python -m fastkd.reproduce.experiments` to regenerate"


def test_grid_covers_the_paper():
    by_method: dict[str, set[str]] = {}
    for e in EXPERIMENTS:
        method, dataset, stem = e.path.removesuffix(".yaml").split("/")
        by_method.setdefault(method, set()).add(stem)
        assert dataset in ("cifar100", "tiny_imagenet")
    assert {f"resnet50_{v}" for v in ("nokd", "online", "s0.5", "s1.0", "s1.5", "s2.0", "offline")} <= \
        by_method["online_kd"]
    assert {"resnet101_s0.0", "resnet101_s4.0"} <= by_method["self_kd"]
    assert {"resnet18_s0.0", "resnet18_s0.1", "resnet18_s1.0"} <= by_method["ema"]
    assert {"resnet18_standard", "resnet18_max", "resnet18_spaced_s1.0", "resnet18_maxspaced_s1.0"} <= \
        by_method["dropout"]
    assert len(EXPERIMENTS) == 2 * 3 * (7 + 6 + 3 + 4)


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=IDS)
def test_file_is_the_compat_mapping_of_its_command_line(experiment):
    path = PAPER_DIR / experiment.path
    assert path.read_text() == render(experiment), "regenerate with python -m fastkd.reproduce.experiments"
    loaded = load_config(path)
    mapped = resolve(experiment.script, experiment.compat_argv()).config
    assert experiment_dict(loaded) == experiment_dict(mapped)
    assert loaded.semantics == "reference" and loaded.train.epochs == 80 and loaded.data.batch_size == 128
    assert loaded.optim.lr == 0.01 and loaded.optim.momentum == 0.9 and loaded.optim.weight_decay == 5e-4


def _plan(path):
    cfg = load_config(path)
    try:
        return cfg, build_plan(cfg).as_dict()
    except ValueError as exc:
        if "has no implementation" in str(exc):
            pytest.skip(str(exc))
        raise


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=IDS)
def test_plan_works(experiment):
    cfg, plan = _plan(PAPER_DIR / experiment.path)
    assert plan["method"] == cfg.method and plan["semantics"] == "reference"
    assert plan["iters_per_epoch"] == (391 if cfg.data.dataset == "cifar100" else 782)


@pytest.mark.parametrize("path,key,expected", [
    ("online_kd/cifar100/resnet18_s1.5.yaml", "interval", 586),       # docs/semantics.md §5.1 worked numbers
    ("online_kd/cifar100/resnet18_s1.5.yaml", "never_distilled", 222),
    ("online_kd/cifar100/resnet18_s0.5.yaml", "replay_events", 160),
    ("online_kd/tiny_imagenet/resnet50_s1.5.yaml", "interval", 1173),
    ("online_kd/cifar100/resnet101_online.yaml", "interval", 0),
    ("online_kd/cifar100/resnet18_offline.yaml", "mode", "offline"),
    ("online_kd/cifar100/resnet18_nokd.yaml", "mode", "no_kd"),
    ("self_kd/cifar100/resnet18_s4.0.yaml", "interval", 1564),        # docs/semantics.md §5.3
    ("ema/cifar100/resnet18_s0.1.yaml", "interval", 39),              # docs/semantics.md §6
    ("dropout/cifar100/resnet18_spaced_s1.0.yaml", "period", 391),    # docs/semantics.md §7
    ("dropout/tiny_imagenet/resnet18_spaced_s1.0.yaml", "variant", "random"),
])
def test_plan_numbers_match_the_spec(path, key, expected):
    _, plan = _plan(PAPER_DIR / path)
    assert plan[key] == expected
