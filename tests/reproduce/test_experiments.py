"""The experiment table is the single source of configs/paper/: every file equals its rendering, and a drifted,
missing or stray file is reported."""

from __future__ import annotations

import shutil

from fastkd.reference.run_net import render_paper_config
from fastkd.reproduce.experiments import FAMILIES, VIT_GRID, drifted, experiments, paper_dir, render


def test_configs_paper_equals_the_table():
    assert drifted() == [], "regenerate with: python -m fastkd.reproduce.experiments"


def test_drift_is_detected(tmp_path):
    folder = tmp_path / "paper"
    shutil.copytree(paper_dir(), folder)
    edited = folder / "online_kd/cifar100/resnet18_s1.5.yaml"
    edited.write_text(edited.read_text().replace("alpha: 0.3", "alpha: 0.4"))
    (folder / "ema/cifar100/resnet50_s0.1.yaml").unlink()
    (folder / "ema/cifar100/resnet50_s9.yaml").write_text("name: stray\n")
    vit = folder / "vit/tiny_imagenet/pit_ti_s0.5.yaml"
    vit.write_text(vit.read_text().replace("interval: 0.5", "interval: 0.6"))
    (folder / "vit/cifar100/cvt_13_base.yaml").unlink()
    assert drifted(folder) == ["ema/cifar100/resnet50_s9.yaml", "online_kd/cifar100/resnet18_s1.5.yaml",
                               "ema/cifar100/resnet50_s0.1.yaml", "vit/cifar100/cvt_13_base.yaml",
                               "vit/tiny_imagenet/pit_ti_s0.5.yaml"]


def test_table_shape_and_baselines():
    table = experiments()
    vit_runs = sum(len(variants) for archs in VIT_GRID.values() for variants in archs.values())
    assert vit_runs == 50 and len(table) == 2 * 3 * (7 + 6 + 3 + 4) + vit_runs
    assert len({e.path for e in table}) == len(table)
    by_variant = {(e.family, e.dataset, e.arch, e.variant): e for e in table}
    for e in table:
        if e.baseline is not None:  # every gain is measured against a variant of the same family/data set/arch
            assert (e.family, e.dataset, e.arch, e.baseline) in by_variant
    assert by_variant[("online_kd", "tiny_imagenet", "resnet50", "s1.5")].interval == 1.5
    assert by_variant[("dropout", "cifar100", "resnet18", "maxspaced_s1.0")].baseline == "max"
    for spec in FAMILIES.values():
        assert {v for v in spec.smoke_variants} <= {e.variant for e in table if e.family == spec.name}
    assert "rate: 0.5" in render(by_variant[("dropout", "cifar100", "resnet18", "spaced_s1.0")])
    spaced_vit = by_variant[("vit", "tiny_imagenet", "deit_tiny", "s2.0")]
    assert spaced_vit.baseline == "online" and spaced_vit.interval == 2.0 and spaced_vit.script == "run_net"
    assert by_variant[("vit", "cifar100", "t2t_vit_7", "s1.0")].baseline == "online"
    assert by_variant[("vit", "cifar100", "pit_ti", "s2.0")].interval == 1.0  # the reference's file says 1.0
    assert ("vit", "cifar100", "t2t_vit_7", "s1.5") not in by_variant  # only what the reference has configs for
    assert render(spaced_vit) == render_paper_config("tiny_imagenet", "deit_tiny", "s2.0")
