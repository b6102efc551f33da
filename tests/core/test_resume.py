"""Resume: N steps + checkpoint + resume equals one uninterrupted run, bitwise on CPU, across a replay event."""

import json

import torch

from datasets_on_disk import write_cifar100
from fastkd.config import load_config
from fastkd.engine.checkpoint import load_checkpoint
from fastkd.engine.trainer import Trainer


def config(root, out, name, extra=()):
    return load_config(None, [
        f"name={name}", f"output_dir={out}", "method=spaced_online_kd", "seed=3", "data.dataset=cifar100",
        f"data.root={root}", "data.batch_size=8", "data.pipeline=torch", "model.downsample_factor=64",
        "model.student_downsample_factor=64", "kd.interval=1.2", "train.epochs=4", "train.device=cpu",
        "train.deterministic=true", "train.log_every_step=true", "train.progress=false",
        "train.tensorboard=false", *extra,
    ])


def test_interrupted_run_resumes_bitwise(tmp_path):
    root = write_cifar100(tmp_path / "data", n_train=36, n_test=10)
    out = tmp_path / "runs"
    full = Trainer(config(root, out, "full"), out / "full", quiet=True)
    full.fit()

    # Stop after 8 iterations: mid-epoch, after the first replay event (I = 6) with two batches logged.
    part = Trainer(config(root, out, "part", ["train.max_steps=8"]), out / "part", quiet=True)
    part.fit()
    state = load_checkpoint(out / "part" / "last.pt")
    assert (state["global_step"], state["epoch"], state["batch_index"]) == (8, 1, 3)
    assert len(state["method"]["replay"]["seeds"]) == 2
    resumed = Trainer(config(root, out, "part"), out / "part", resume=True, quiet=True)
    resumed.fit()

    for name in ("teacher", "student"):
        a = full.learners[name].model.state_dict()
        b = resumed.learners[name].model.state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs after resume"
    log_a = (out / "full" / "steps.jsonl").read_text().splitlines()
    log_b = (out / "part" / "steps.jsonl").read_text().splitlines()
    assert [json.loads(r) for r in log_a] == [json.loads(r) for r in log_b]
    assert resumed.summary()["student_final_top1"] == full.summary()["student_final_top1"]


def test_augmented_run_is_repeatable(tmp_path):
    root = write_cifar100(tmp_path / "data", n_train=20, n_test=10)
    out = tmp_path / "runs"
    states = []
    for name in ("a", "b"):
        trainer = Trainer(config(root, out, name, ["train.epochs=2"]), out / name, quiet=True)
        trainer.fit()
        states.append(trainer.learners["student"].model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
