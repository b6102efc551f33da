"""Resume: an interrupted run of each method continues bitwise like an uninterrupted one (replay log, EMA weights
and schedule, dropout counters and the RNG all ride in the checkpoint)."""

import pytest
import torch

from datasets_on_disk import write_cifar100
from fastkd.config import load_config
from fastkd.engine.trainer import Trainer


def config(root, out, name, method, extra):
    return load_config(None, [
        f"name={name}", f"output_dir={out}", f"method={method}", "seed=5", "data.dataset=cifar100",
        f"data.root={root}", "data.batch_size=4", "data.eval_batch_size=5", "data.pipeline=torch",
        "model.student_downsample_factor=256", "train.epochs=3", "train.device=cpu", "train.deterministic=true",
        "train.progress=false", "train.tensorboard=false", *extra,
    ])


def tensors(trainer):
    state = dict(trainer.learners["model"].model.state_dict())
    if trainer.cfg.method == "spaced_ema":
        state.update({f"ema.{k}": v for k, v in trainer.method.ema.module.state_dict().items()})
    return state


@pytest.mark.parametrize("method, extra", [
    ("spaced_self_kd", ["kd.interval=0.6"]),                    # stops with 2 batches logged for the next event
    ("spaced_ema", ["ema.interval=1000", "ema.decay=0.5"]),      # random intervals drawn from a saved host RNG
    ("spaced_dropout", ["dropout.op=standard", "dropout.space=0.8", "dropout.cutout_input=true"]),
])
def test_interrupted_run_resumes_bitwise(tmp_path, method, extra):
    root = write_cifar100(tmp_path / "data", n_train=18, n_test=7)
    out = tmp_path / "runs"
    full = Trainer(config(root, out, "full", method, extra), out / "full", quiet=True)
    full.fit()
    part = Trainer(config(root, out, "part", method, [*extra, "train.max_steps=7"]), out / "part", quiet=True)
    part.fit()
    resumed = Trainer(config(root, out, "part", method, extra), out / "part", resume=True, quiet=True)
    resumed.fit()

    expected, got = tensors(full), tensors(resumed)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    # best.pt follows the method's main evaluated output, which must be one it evaluates
    assert f"eval_{full.method.main_model(0)}_top1" in full.history[-1]
    assert (out / "full" / "best.pt").is_file()
    counters = {k: v for k, v in full.method.state_dict().items() if isinstance(v, int)}
    assert counters and counters == {k: resumed.method.state_dict()[k] for k in counters}
