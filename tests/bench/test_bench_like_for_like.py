"""The reference-style baselines of `fastkd bench` compute what fastkd computes: proof the comparison is like for like.

Online KD family: the fastkd engine (`semantics: reference`) and the baseline loop train the same weights on the
same data (augmentation off, no shuffling) in float64 (`train.float64`), so summation-order noise stays far below
the tolerance; every logged loss of every step (27 and 12 steps, spanning two replay events) and the final weights
must agree to 1e-7. The baseline's images are normalised in float64 here too: its float32 ToTensor rounds x/255,
and that 1e-7 input difference alone grows past 1e-4 within ten steps through the BN layers of these 8-channel nets. The methods fastkd does not implement yet
(self KD, EMA, dropout) are checked op by op against the fastkd kernels and models they will use.
"""

import copy
import json
import math

import numpy as np
import pytest
import torch

from fastkd import bench
from fastkd.bench import reference_style as rs
from fastkd.config import METHODS
from fastkd.engine.trainer import Trainer
from fastkd.kernels import FlatEMA, cross_entropy, kd_loss
from fastkd.models import create_model, dropout_resnet, self_kd_resnet  # noqa: F401  (register their models)
from fastkd.plans.ema import EmaSchedule

N_TRAIN, BATCH = 40, 8  # L = 5 iterations per epoch
CIFAR100_STATS = ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
LOGGED = {"teacher": ["loss"], "student": ["loss", "ce", "soft", "feature"], "deepest": ["loss"], "full": ["loss"],
          "model": ["loss"]}
"""The values each baseline reads with `.item()`, by the kind of step fastkd logs in steps.jsonl."""


def float64_to_tensor(stats):
    """ToTensor + Normalize in float64, the way fastkd's float64 pipeline computes it."""
    mean, std = (torch.tensor(v, dtype=torch.float64) for v in stats)

    def transform(image) -> torch.Tensor:
        return torch.from_numpy(np.array(image)).to(torch.float64).mul_(1 / 255).sub_(mean).div_(std).permute(2, 0, 1)
    return transform


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return bench.write_synthetic_cifar100(tmp_path_factory.mktemp("data"), N_TRAIN, 8)


def engine_log(run_dir):
    rows = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    return [(r["kind"], [r[k] for k in LOGGED[r["kind"]]]) for r in rows]


def pending(method: str):
    return pytest.mark.skipif(method not in METHODS, reason=f"fastkd has no {method} yet")


CASES = [
    # I = 6: replays at g = 6 and 12, the last 3 batches never distilled
    pytest.param("spaced_online_kd", ["kd.interval=1.2"], 3, CIFAR100_STATS, id="spaced_online_kd"),
    pytest.param("online_kd", [], 2, CIFAR100_STATS, id="online_kd"),
    # I = 6 on the shifted index n = g - 5: KD events at g = 5 and 11 (5 and 6 buffered batches re-forwarded)
    pytest.param("spaced_self_kd", ["kd.interval=1.2"], 3, CIFAR10_STATS, id="spaced_self_kd",
                 marks=pending("spaced_self_kd")),
    # t = int(0.4 * 5) = 2: the EMA is updated after every second optimizer step
    pytest.param("spaced_ema", ["ema.interval=0.4", "ema.decay=0.9"], 2, CIFAR100_STATS, id="spaced_ema",
                 marks=pending("spaced_ema")),
    # MaxSpacedDropout (deterministic, so both sides drop the same elements) with S = int(1.2 * 5) = 6
    pytest.param("spaced_dropout", ["dropout.op=max", "dropout.space=1.2"], 2, CIFAR100_STATS, id="spaced_dropout",
                 marks=pending("spaced_dropout")),
]


@pytest.mark.parametrize("method, overrides, epochs, stats", CASES)
def test_baseline_matches_engine(tmp_path, data_root, method, overrides, epochs, stats):
    scale = bench.Scale(BATCH, N_TRAIN, 64.0)
    cfg = bench.fastkd_config(bench.BENCH_METHODS[method], scale, "cpu", data_root, tmp_path / "runs", epochs, [
        *overrides, "data.augment=none", "data.shuffle=false", "train.float64=true", "train.log_every_step=true",
        # stop before the last epoch's evaluation: reference-semantics EMA evaluates in train mode (BN statistics
        # absorb test batches, docs/semantics.md R12) and the baseline, like the benchmark, does not evaluate
        f"train.epochs={epochs + 1}", f"train.max_steps={epochs * scale.iters_per_epoch}",
    ])
    trainer = Trainer(cfg, tmp_path / "runs" / method, quiet=True)
    baseline = bench.build_reference(method, trainer, data_root, workers=0, log_steps=True)
    baseline.loader.dataset.transform = float64_to_tensor(stats)
    trainer.fit()
    for _ in range(epochs):
        baseline.train_epoch()

    got, expected = engine_log(trainer.run_dir), baseline.step_log.rows
    assert [kind for kind, _ in got] == [kind for kind, _ in expected]
    assert len(expected) >= 10
    torch.testing.assert_close(torch.tensor([v for _, vs in got for v in vs], dtype=torch.float64),
                               torch.tensor([v for _, vs in expected for v in vs], dtype=torch.float64),
                               rtol=1e-7, atol=1e-7)
    for name, engine_model, baseline_model in final_models(method, trainer, baseline):
        engine_state = engine_model.state_dict()
        for key, value in baseline_model.state_dict().items():
            torch.testing.assert_close(engine_state[key], value, rtol=1e-7, atol=1e-7, msg=f"{name} {key}")


def final_models(method, trainer, baseline):
    """(name, fastkd module, baseline module) pairs whose weights must agree after training."""
    if method in ("spaced_online_kd", "online_kd"):
        return [(name, trainer.learners[name].model, getattr(baseline, name)) for name in ("teacher", "student")]
    (learner,) = trainer.learners.values()
    if method == "spaced_dropout":
        return [("model", learner.model, baseline.model.net)]
    pairs = [("model", learner.model, baseline.model if method == "spaced_ema" else baseline.net)]
    if method == "spaced_ema":
        pairs.append(("ema", trainer.method.ema.module, baseline.ema_model))
    return pairs


def test_self_kd_loss_matches_fastkd_kernels():
    """Spec 3.2 written with the fused kernel (K = 3 exits against the deepest one) equals the unfused baseline."""
    torch.manual_seed(0)
    batch, classes, width, T, lam, mu = 6, 100, 32, 3.0, 0.3, 0.03
    logits = [torch.randn(batch, classes, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    features = [torch.randn(batch, width, dtype=torch.float64) for _ in range(4)]
    labels = torch.randint(0, classes, (batch,))
    adaptation = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(3)).double()

    expected = rs.self_kd_loss(logits, features, labels, adaptation, temperature=T, lam=lam, mu=mu)
    heads = kd_loss(torch.stack(logits[1:]), logits[0].detach(), labels, temperature=T, alpha=lam, soft="soft_ce")
    feature = sum(torch.dist(adaptation[k - 1](features[k]), features[0]) for k in (2, 3))
    got = cross_entropy(logits[0], labels) + heads.total + mu * feature
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    grads_expected = torch.autograd.grad(expected, logits)
    grads_got = torch.autograd.grad(got, logits)
    for g, e in zip(grads_got, grads_expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_ema_loop_matches_flat_ema():
    """The per-parameter Python loop and fastkd's FlatEMA (params_only) give the same averages; buffers untouched."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10, downsample_factor=64.0)
    ema_loop, twin = copy.deepcopy(model), copy.deepcopy(model)
    flat = FlatEMA(twin, decay=0.9, policy="params_only", impl="twin")
    for _ in range(3):
        with torch.no_grad():
            for p_model, p_twin in zip(model.parameters(), twin.parameters()):
                step = torch.randn_like(p_model) * 0.1
                p_model.add_(step)
                p_twin.add_(step)
        rs.ema_update(ema_loop, model, 0.9)
        flat.update()
    # Same arithmetic in a different op order: 3 updates of 2-3 fp32 roundings (6e-8 relative) each stay < 1e-6.
    for (name, a), b in zip(ema_loop.named_parameters(), flat.module.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)
    for a, b in zip(ema_loop.buffers(), model.buffers()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("s, L, expected", [(0.1, 391, 39), (1.0, 391, 391), (0.0, 391, 1), (0.001, 391, 0)])
def test_ema_interval_follows_spec_and_fastkd_schedule(s, L, expected):
    assert rs.ema_interval(s, L) == expected
    if expected > 0:
        assert EmaSchedule.from_reference(s, L).interval == expected


def test_ema_random_interval_range():
    draws = {rs.ema_interval(600.0, 391) for _ in range(2000)}
    assert min(draws) >= 1 and max(draws) <= 157 and len(draws) > 100


def test_dropout_forward_matches_fastkd_dropout_resnet():
    """MaxSpacedDropout built inside forward with the sine rate == fastkd's DropoutResNet with set_drop_rates.
    In float64: the two dropout implementations round differently, and MaxDropout's hard threshold would turn an
    fp32 rounding difference into a dropped activation; float64 rounding stays far below the 1e-6 tolerance."""
    torch.manual_seed(0)
    net = create_model("dropout_resnet18", num_classes=10, drop_op="max", drop_rate=0.5).double().train()
    reference = rs.ReferenceDropoutResNet(copy.deepcopy(net), 0.5, "MaxSpacedDropout", space_iters=4)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    for it in range(5):
        rate = 0.5 * abs(math.sin(math.pi * it / 4))
        assert reference.site_rates() == [rate] * 4
        net.set_drop_rates(rate)
        torch.testing.assert_close(reference(x), net(x), rtol=1e-6, atol=1e-6, msg=f"iteration {it}")
    assert reference.iter == 5


def test_spaced_dropout_rates_and_fresh_modules():
    net = create_model("dropout_resnet18", num_classes=10, drop_op="standard", drop_rate=0.5).train()
    sine = rs.ReferenceDropoutResNet(copy.deepcopy(net), 0.5, "SpacedDropout", space_iters=391)
    x = torch.randn(2, 3, 32, 32)
    net.set_drop_rates(0.0)
    torch.testing.assert_close(sine(x), net(x))  # iteration 0: p = 0.5 |sin 0| = 0, dropout is the identity
    sine.iter = 391 // 2
    assert sine.site_rates()[0] == pytest.approx(0.5 * abs(math.sin(math.pi * 195 / 391)))
    random_variant = rs.ReferenceDropoutResNet(net, 0.5, "SpacedDropout", space_iters=3910)
    rates = random_variant.site_rates()
    assert len(set(rates)) == 4 and all(0 <= r < 0.5 for r in rates)
    assert isinstance(sine.make_dropout(0.3), rs.dropout.StandardDropout)
    assert sine.make_dropout(0.3) is not sine.make_dropout(0.3)


def test_reference_dataset_reads_the_same_pixels_as_fastkd(data_root):
    from PIL import Image

    from fastkd.data import load_dataset

    train, _ = load_dataset("cifar100", str(data_root))
    dataset = rs.CifarPickleDataset(data_root, train=True, transform=rs.train_transform("online_kd", augment=False))
    assert len(dataset) == N_TRAIN and dataset.targets == train.labels.tolist()
    assert torch.equal(torch.from_numpy(dataset.data), train.images)
    for name in ("online_kd", "self_kd"):
        image = rs.train_transform(name)(Image.fromarray(dataset.data[0]))
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32


def test_autoaugment_runs_every_op():
    from PIL import Image

    from fastkd.pipelines.policies import OPS, unsigned_magnitude

    image = Image.fromarray(torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8).numpy())
    for op in OPS:
        out = rs.autoaugment._apply(image, op, unsigned_magnitude(op, 9, 32, 32))
        assert out.size == (32, 32) and out.mode == "RGB", op


@pytest.mark.parametrize("recipe", ["online_kd", "self_kd"])
def test_reference_loader_augments_in_workers(data_root, recipe):
    loader = rs.train_loader(data_root, recipe, 16, num_workers=2)
    x, y = next(iter(loader))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (16,)
    assert len(loader) == N_TRAIN // 16 + 1


VIT_LOGGED = {"teacher": ["loss"], "student": ["loss", "ce", "kd"]}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.mark.parametrize("interval, events", [(1.0, 3), (1.2, 2)])
def test_vit_baseline_matches_engine(tmp_path, data_root, interval, events):
    """The pycls-style loop and the engine (`semantics: reference`) on a 2-block DeiT at 32 px in float64: every
    teacher and student loss of 3 epochs and the final weights agree. s = 1.0: L = 5 divides S = 5, so each replay
    takes S + 1 = 6 steps over two loader passes; s = 1.2: S = 6, one full pass and one step of the next."""
    scale = bench.Scale(BATCH, N_TRAIN, image_size=32, depth=2)
    epochs = 3
    cfg = bench.fastkd_config(bench.BENCH_METHODS["vit_spaced_kd"], scale, "cpu", data_root, tmp_path / "runs",
                              epochs, [
        f"vit.interval={interval}", "vit.model_args={depth: 2, embed_dim: 32, num_heads: 2}",
        "vit.drop_path_rate=0", "optim.warmup_epochs=1", "data.augment=none", "data.shuffle=false",
        "train.float64=true", "train.log_every_step=true", f"train.epochs={epochs + 1}",
        f"train.max_steps={epochs * scale.iters_per_epoch}",
    ])
    trainer = Trainer(cfg, tmp_path / "runs" / "vit", quiet=True)
    baseline = bench.build_reference("vit_spaced_kd", trainer, data_root, workers=0, log_steps=True)
    for loader in (baseline.loader, baseline.space_loader):
        loader.dataset.transform = float64_to_tensor(IMAGENET_STATS)
    trainer.fit()
    for _ in range(epochs):
        baseline.train_epoch()

    rows = [json.loads(line) for line in (trainer.run_dir / "steps.jsonl").read_text().splitlines()]
    got = [(r["kind"], [r[k] for k in VIT_LOGGED[r["kind"]]]) for r in rows]
    expected = baseline.step_log.rows
    assert [kind for kind, _ in got] == [kind for kind, _ in expected]
    assert trainer.method.replay_events == events
    assert sum(kind == "student" for kind, _ in expected) == trainer.method.replay_steps >= 12
    torch.testing.assert_close(torch.tensor([v for _, vs in got for v in vs], dtype=torch.float64),
                               torch.tensor([v for _, vs in expected for v in vs], dtype=torch.float64),
                               rtol=1e-9, atol=1e-9)
    for name in ("teacher", "student"):
        engine_state = trainer.learners[name].model.state_dict()
        for key, value in getattr(baseline, name).state_dict().items():
            torch.testing.assert_close(engine_state[key], value, rtol=1e-9, atol=1e-9, msg=f"{name} {key}")
