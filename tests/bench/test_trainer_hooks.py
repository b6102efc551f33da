"""What `fastkd bench` drives the engine through (nothing is monkeypatched): fit(max_steps=...),
`train.checkpoints: false` (set by fastkd_config) and the method's replay-log counter `replay_peak_bytes()`."""

import pytest

from fastkd import bench
from fastkd.config import load_config
from fastkd.engine.trainer import Trainer

SCALE = bench.Scale(8, 40, 64.0)  # L = 5 iterations per epoch


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return bench.write_synthetic_cifar100(tmp_path_factory.mktemp("data"), SCALE.train_images, 8)


def trainer_for(method: str, data_root, tmp_path, extra: list[str] = ()) -> Trainer:
    cfg = bench.fastkd_config(bench.BENCH_METHODS[method], SCALE, "cpu", data_root, tmp_path / "runs", epochs=4,
                              extra=extra)
    return Trainer(cfg, tmp_path / "runs" / method, quiet=True)


def test_fit_stops_at_max_steps_and_continues(data_root, tmp_path):
    trainer = trainer_for("spaced_online_kd", data_root, tmp_path)
    L = SCALE.iters_per_epoch
    summary = trainer.fit(max_steps=3)
    assert trainer.global_step == summary["global_step"] == 3 and not summary["finished"]
    trainer.fit(max_steps=3 + L)
    assert trainer.global_step == 3 + L and trainer.epoch == 1 and trainer.batch_index == 3
    assert trainer.cfg.train.max_steps is None  # the argument does not change the config
    assert not trainer.cfg.train.checkpoints
    assert not list(trainer.run_dir.glob("*.pt")), "train.checkpoints=false must write no checkpoint"
    # s = 1: the log holds I = L batches of 8 int32 indices plus an 8-byte seed before each replay
    assert trainer.method.replay_peak_bytes() == L * (SCALE.batch_size * 4 + 8)


def test_checkpoints_are_written_by_default(data_root, tmp_path):
    assert load_config(None).train.checkpoints
    trainer = trainer_for("online_kd", data_root, tmp_path, ["train.checkpoints=true"])
    trainer.fit(max_steps=2)
    assert (trainer.run_dir / "last.pt").is_file()
    assert trainer.method.replay_peak_bytes() == 0  # online KD (s = 0) keeps a log but never fills it


def test_methods_without_a_replay_log_report_none(data_root, tmp_path):
    trainer = trainer_for("spaced_ema", data_root, tmp_path)
    trainer.fit(max_steps=1)
    assert trainer.method.replay_peak_bytes() is None
