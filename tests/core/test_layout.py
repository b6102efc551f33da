"""One memory-layout decision per run: `train.channels_last: auto` follows a fixed rule from the models, is saved
in the run's config.yaml and checkpoint, and --resume reuses it, so runs with the defaults repeat exactly."""

import csv
import json

import pytest
import yaml

from datasets_on_disk import write_cifar100
from fastkd.config import TrainConfig, load_config
from fastkd.engine import runtime as runtime_module
from fastkd.engine.checkpoint import load_checkpoint
from fastkd.engine.runtime import build_runtime, resolve_channels_last
from fastkd.engine.trainer import Trainer
from fastkd.models import create_model

WALL_CLOCK_COLUMNS = {"images_per_s", "epoch_seconds", "data_wait_share"}
"""metrics.csv columns that measure time, not training: left out of the repeatability comparisons."""


@pytest.mark.parametrize("downsample_factor, float64, expected", [
    (1.0, False, True),  # widths 64-512
    (16.0, False, True),  # widths 16-128
    (64.0, False, True),  # widths 8-64 (batch norm over 8 channels: kernels/batch_norm.py)
    (256.0, False, False),  # widths 4-32
    (1.0, True, False),  # float64 stays NCHW
])
def test_auto_layout_follows_the_narrowest_width(downsample_factor, float64, expected):
    runtime = build_runtime(TrainConfig(device="cpu", float64=float64))
    model = create_model("resnet18", num_classes=10, downsample_factor=downsample_factor)
    assert resolve_channels_last(runtime, [model]).channels_last is expected


def test_explicit_layout_is_kept():
    narrow = create_model("resnet18", num_classes=10, downsample_factor=256.0)
    runtime = build_runtime(TrainConfig(device="cpu", channels_last=True))
    assert resolve_channels_last(runtime, [narrow]).channels_last is True


def _metrics_without_wall_clock(path):
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k not in WALL_CLOCK_COLUMNS} for row in csv.DictReader(fh)]


def test_same_config_and_seed_give_identical_metrics_with_the_defaults(tmp_path):
    """Digits, the demo's method, every train.* layout/precision/determinism setting left at its default."""
    rows, layouts = [], []
    for name in ("first", "second"):
        cfg = load_config(None, [
            f"name={name}", f"output_dir={tmp_path}", "method=spaced_online_kd", "seed=4", "data.dataset=digits",
            "data.batch_size=64", "data.eval_batch_size=128", "model.downsample_factor=16",
            "model.student_downsample_factor=64", "kd.interval=0.5", "train.epochs=2", "train.device=cpu",
            "train.progress=false", "train.tensorboard=false",
        ])
        Trainer(cfg, tmp_path / name, quiet=True).fit()
        rows.append(_metrics_without_wall_clock(tmp_path / name / "metrics.csv"))
        layouts.append(yaml.safe_load((tmp_path / name / "config.yaml").read_text())["train"]["channels_last"])
    assert len(rows[0]) == 2 and "eval_student_top1" in rows[0][0]
    assert rows[0] == rows[1]
    assert layouts == [True, True]  # widths 8-64 and 16-128


def config(root, out, name, extra=()):
    return load_config(None, [
        f"name={name}", f"output_dir={out}", "method=spaced_online_kd", "seed=3", "data.dataset=cifar100",
        f"data.root={root}", "data.batch_size=8", "model.downsample_factor=16", "model.student_downsample_factor=16",
        "kd.interval=1.2", "train.epochs=3", "train.device=cpu", "train.log_every_step=true",
        "train.progress=false", "train.tensorboard=false", *extra,
    ])


def test_resume_with_the_defaults_equals_the_uninterrupted_run_and_reuses_the_saved_layout(tmp_path, monkeypatch):
    root = write_cifar100(tmp_path / "data", n_train=24, n_test=8)
    out = tmp_path / "runs"
    Trainer(config(root, out, "full"), out / "full", quiet=True).fit()
    part = Trainer(config(root, out, "part", ["train.max_steps=5"]), out / "part", quiet=True)
    part.fit()
    assert part.runtime.channels_last is True  # widths 16-128
    assert yaml.safe_load((out / "part" / "config.yaml").read_text())["train"]["channels_last"] is True
    assert load_checkpoint(out / "part" / "last.pt")["config"]["train"]["channels_last"] is True

    # Were `auto` settled again on resume, this rule would now pick NCHW: the saved choice must win.
    monkeypatch.setattr(runtime_module, "CHANNELS_LAST_MIN_WIDTH", 10**6)
    resumed = Trainer(config(root, out, "part"), out / "part", resume=True, quiet=True)
    assert resumed.runtime.channels_last is True
    resumed.fit()
    full_log = [json.loads(line) for line in (out / "full" / "steps.jsonl").read_text().splitlines()]
    resumed_log = [json.loads(line) for line in (out / "part" / "steps.jsonl").read_text().splitlines()]
    assert len(full_log) > 5 and resumed_log == full_log
