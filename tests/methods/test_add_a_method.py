"""A new method is one module: this file defines "spaced label smoothing" (CE with label smoothing switched on every
I = int(L * kd.interval) iterations), registers it, and trains it through the Trainer with no edit elsewhere.
docs/architecture.md walks through the same example."""

import json
from dataclasses import asdict, dataclass, field

import pytest
import torch.nn.functional as F
from datasets_on_disk import write_cifar100
from fastkd.cli import main as cli_main
from fastkd.config import ConfigError, load_config, methods as method_table
from fastkd.engine.checkpoint import load_checkpoint
from fastkd.engine.trainer import Trainer
from fastkd.methods import Method, method_names, register_method
from fastkd.models import create_model


# ------------------------------------------------------------------------------ the method: ~40 lines
@dataclass(frozen=True)
class SmoothingPlan:
    method: str
    semantics: str
    iters_per_epoch: int
    total_epochs: int
    interval: int
    """I: label smoothing is on at every I-th iteration."""
    smoothed_steps: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


class SpacedLabelSmoothing(Method):
    smoothing = 0.1

    def __init__(self, plan: SmoothingPlan):
        self.plan = plan
        self.smoothed_steps = 0

    @classmethod
    def from_config(cls, cfg, iters_per_epoch):
        interval = max(1, int(iters_per_epoch * cfg.kd.interval))
        total = iters_per_epoch * cfg.train.epochs
        return cls(SmoothingPlan(cfg.method, cfg.semantics, iters_per_epoch, cfg.train.epochs, interval,
                                 total // interval))

    def build_models(self, cfg, num_classes):
        return {"student": create_model(cfg.model.student, num_classes=num_classes,
                                        downsample_factor=cfg.model.student_downsample_factor)}

    def run_iteration(self, it, ctx):
        x, y = ctx.batch(it.indices, it.seed)
        smoothing = self.smoothing if it.step % self.plan.interval == 0 else 0.0
        ctx.train_step("student", x, y, lambda out, labels: F.cross_entropy(out[1], labels, label_smoothing=smoothing))
        self.smoothed_steps += smoothing > 0

    def counters(self):
        return {"smoothed_steps": self.smoothed_steps}

    def state_dict(self):
        return self.counters()

    def load_state_dict(self, state):
        self.smoothed_steps = state["smoothed_steps"]


# ------------------------------------------------------------------------------------------------ tests
NAME = "spaced_label_smoothing"


@pytest.fixture
def registered(monkeypatch):
    """Register the toy method for one test; the registry is restored afterwards."""
    monkeypatch.setattr(method_table, "_REGISTRY", dict(method_table._REGISTRY))
    register_method(NAME, family="label_smoothing", summary="label smoothing every I iterations")(
        SpacedLabelSmoothing)


def config(root, out, name, *extra):
    # N = 18, B = 4: L = 5 batches per epoch; kd.interval = 0.4 gives I = 2 (smoothing at steps 2 and 4).
    return load_config(None, [
        f"name={name}", f"output_dir={out}", f"method={NAME}", "kd.interval=0.4", "seed=3", "data.dataset=cifar100",
        f"data.root={root}", "data.batch_size=4", "data.eval_batch_size=6", "data.pipeline=torch",
        "model.student_downsample_factor=256", "train.epochs=1", "train.device=cpu", "train.float64=true",
        "train.deterministic=true", "train.log_every_step=true", "train.progress=false", "train.tensorboard=false",
        *extra,
    ])


def step_losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    assert [(row["step"], row["kind"]) for row in rows] == [(g, "student") for g in range(1, 6)]
    return [row["loss"] for row in rows]


def test_unregistered_name_is_a_config_error_listing_the_methods():
    assert NAME not in method_names()
    allowed = f"choose one of 'no_kd', .* or '{method_names()[-1]}'"
    with pytest.raises(ConfigError, match=f"method: '{NAME}' is not allowed; {allowed}"):
        load_config(None, [f"method={NAME}"])


def test_registered_toy_method_plans_and_trains_one_epoch(registered, tmp_path, capsys):
    assert method_names()[-1] == NAME
    root = write_cifar100(tmp_path / "data", n_train=18, n_test=7)

    cfg_file = tmp_path / "toy.yaml"
    cfg_file.write_text(f"method: {NAME}\ndata:\n  dataset: cifar100\nkd:\n  interval: 0.5\n")
    assert cli_main(["plan", str(cfg_file), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["method"], plan["iters_per_epoch"], plan["interval"]) == (NAME, 391, 195)
    assert plan["smoothed_steps"] == 31280 // 195   # 80 epochs of L = 391

    smoothed = Trainer(config(root, tmp_path / "runs", "smoothed"), tmp_path / "runs" / "smoothed", quiet=True)
    summary = smoothed.fit()
    assert summary["finished"] and summary["global_step"] == 5 and summary["smoothed_steps"] == 2
    assert summary["student_final_top1"] is not None
    assert load_checkpoint(tmp_path / "runs" / "smoothed" / "last.pt")["method"] == {"smoothed_steps": 2}

    # The same run with smoothing off takes the identical first step and a different second one: the switch
    # fires at g = I = 2 and not before.
    plain = Trainer(config(root, tmp_path / "runs", "plain"), tmp_path / "runs" / "plain", quiet=True)
    plain.method.smoothing = 0.0
    plain.fit()
    with_smoothing, without = step_losses(smoothed.run_dir), step_losses(plain.run_dir)
    assert with_smoothing[0] == without[0]
    assert with_smoothing[1] != without[1]
