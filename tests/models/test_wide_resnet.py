"""The dropout WideResNet (the reference's `dropout/train.py --model wideresnet`): xternalz key layout and size,
dropout placement, the dropout family's rules for it, and a short run through `fastkd compat dropout`."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from datasets_on_disk import write_cifar100

from fastkd import cli
from fastkd.config import ConfigError
from fastkd.engine.checkpoint import load_checkpoint
from fastkd.methods import plan_dropout
from fastkd.models import WideResNet, create_model, max_dropout
from fastkd.reference.compat import resolve

L_CIFAR100 = 391


def xternalz_keys(depth: int, widen_factor: int) -> list[str]:
    """The state_dict keys of xternalz/WideResNet-pytorch's WideResNet, in its registration order."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    keys = ["conv1.weight"]
    for stage in range(3):
        for i in range((depth - 4) // 6):
            prefix = f"block{stage + 1}.layer.{i}"
            in_planes = widths[stage] if i == 0 else widths[stage + 1]
            keys += [f"{prefix}.bn1.{k}" for k in bn] + [f"{prefix}.conv1.weight"]
            keys += [f"{prefix}.bn2.{k}" for k in bn] + [f"{prefix}.conv2.weight"]
            if in_planes != widths[stage + 1]:
                keys.append(f"{prefix}.convShortcut.weight")
    return keys + [f"bn1.{k}" for k in bn] + ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("depth, widen_factor", [(28, 10), (16, 4), (10, 1)])
def test_keys_follow_the_xternalz_layout(depth, widen_factor):
    with torch.device("meta"):
        model = WideResNet(depth=depth, widen_factor=widen_factor, num_classes=100)
    assert list(model.state_dict()) == xternalz_keys(depth, widen_factor)


@pytest.mark.parametrize("num_classes, expected", [(100, 36_536_884), (10, 36_479_194)])
def test_wrn_28_10_parameter_count(num_classes, expected):
    # 36,479,194 is the published size of xternalz's WRN-28-10 on CIFAR-10; the 100-class head adds 90 * 641.
    with torch.device("meta"):
        model = create_model("dropout_wideresnet", num_classes=num_classes)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_forward_shapes_and_the_svhn_variant():
    torch.manual_seed(0)
    model = WideResNet(depth=10, widen_factor=1, num_classes=100)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 100)  # global pool: Tiny ImageNet works too
    with torch.device("meta"):
        svhn = create_model("dropout_wideresnet16_4", num_classes=10)
    assert list(svhn.state_dict()) == xternalz_keys(16, 4) and len(svhn.dropout_sites) == 6


def test_constructor_rejects_bad_shapes():
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNet(depth=27)
    with pytest.raises(ValueError, match="no channels"):
        WideResNet(depth=10, widen_factor=1, downsample_factor=400.0)
    with pytest.raises(ValueError, match="drop_op must be one of"):
        WideResNet(depth=10, drop_op="gaussian")


def test_conv_init_and_rate_buffers_add_no_keys():
    torch.manual_seed(0)
    model = WideResNet(depth=16, widen_factor=4, num_classes=100)
    expected_std = (2 / (3 * 3 * 256)) ** 0.5  # N(0, 2 / (k*k*out_channels)), 256 = 64 * 4
    assert abs(model.block3.layer[1].conv2.weight.std().item() - expected_std) < 0.02 * expected_std
    assert torch.count_nonzero(model.fc.bias) == 0
    assert not any(".dropout" in k for k in model.state_dict())
    assert len(model.dropout_sites) == 6 and all(site.rate.dtype == torch.float64 for site in model.dropout_sites)


@pytest.mark.parametrize("projected", [True, False])
def test_max_dropout_sits_between_the_two_convs(projected):
    torch.manual_seed(1)
    model = WideResNet(depth=16, widen_factor=2, num_classes=10, drop_rate=0.4).train()
    block = model.block2.layer[0] if projected else model.block2.layer[1]
    x = torch.randn(4, block.conv1.in_channels, 16, 16)
    activated = F.relu(block.bn1(x))
    inner = F.relu(block.bn2(block.conv1(activated)))
    shortcut = x if block.convShortcut is None else block.convShortcut(activated)
    expected = block.conv2(max_dropout(inner, torch.tensor(0.4, dtype=torch.float64))) + shortcut
    assert (block.convShortcut is not None) == projected
    torch.testing.assert_close(block(x), expected, rtol=0, atol=0)
    assert not torch.equal(block(x), block.conv2(inner) + shortcut)  # the site did drop something


def test_sites_follow_eval_mode_and_the_rate_schedule():
    torch.manual_seed(2)
    model = WideResNet(depth=10, widen_factor=1, num_classes=10, drop_rate=0.5)
    x = torch.randn(3, 3, 32, 32)
    model.eval()
    without = model(x)
    model.set_drop_rates(0.0)
    torch.testing.assert_close(model(x), without, rtol=0, atol=0)
    model.set_drop_rates(0.5)
    assert torch.equal(model(x), without)  # eval mode: the sites pass through, as the reference's MaxDropout
    model.active_at_eval = True
    assert not torch.equal(model(x), without)
    model.set_drop_rates(torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(model(x), without, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"shape \(3,\), got \(4,\)"):
        model.set_drop_rates(torch.zeros(4))


def test_reference_semantics_allows_only_the_reference_wideresnet_run():
    plan = plan_dropout("dropout", "reference", L_CIFAR100, 80, "max", 0.3, 10.0, False, 16, wide_resnet=True)
    assert not plan.active_at_eval and any("evaluation runs without dropout" in n for n in plan.notes)
    assert plan_dropout("dropout", "reference", L_CIFAR100, 80, "max", 0.3, 10.0, False, 16).active_at_eval
    for method, op in (("spaced_dropout", "max"), ("dropout", "standard")):
        with pytest.raises(ConfigError, match="the reference's WideResNet has no .*semantics: standard"):
            plan_dropout(method, "reference", L_CIFAR100, 80, op, 0.3, 1.0, False, 16, wide_resnet=True)
    # Under standard semantics its RateDropout sites take any op and schedule.
    spaced = plan_dropout("spaced_dropout", "standard", L_CIFAR100, 80, "standard", 0.3, 1.0, False, 16,
                          wide_resnet=True)
    assert (spaced.variant, spaced.active_at_eval) == ("sine", False)


def test_compat_translates_wideresnet_to_constant_max_dropout():
    resolved = resolve("dropout", ["--dataset", "cifar100", "--model", "wideresnet", "--drop_method",
                                   "SpacedDropout", "--space", "2", "--drop", "0.2"])
    cfg = resolved.config
    assert (cfg.method, cfg.dropout.op, cfg.dropout.rate, cfg.model.student) == ("dropout", "max", 0.2, "wideresnet")
    assert cfg.name == "cifar100_wideresnet_spaced_2.0_SpacedDropout_0.2"  # the reference's test_id
    ignored = [n.split(":")[0] for n in resolved.notes if "WideResNet" in n]
    assert ignored == ["--drop_method SpacedDropout, --space 2.0"]
    # --space still spaces the input cutout, so it is not named as ignored then; no note without the flags.
    cutout = resolve("dropout", ["--dataset", "cifar100", "--model", "wideresnet", "--space", "2", "--cutout_input"])
    assert not any("WideResNet" in n for n in cutout.notes) and cutout.config.dropout.space == 2.0
    plain = resolve("dropout", ["--dataset", "cifar100", "--model", "wideresnet"])
    assert not any("WideResNet" in n for n in plain.notes)
    # No divide-by-zero crash: the reference's WideResNet never uses --space for the rate.
    assert resolve("dropout", ["--dataset", "cifar100", "--model", "wideresnet", "--drop_method", "MaxSpacedDropout",
                               "--space", "0"]).config.method == "dropout"


def test_compat_dropout_wideresnet_trains(tmp_path, capsys):
    root = write_cifar100(tmp_path / "data", n_train=16, n_test=8)
    # 16 images, batch 8 -> 2 steps; the width is cut 8x by a fastkd-only override (depth stays 28).
    argv = ["compat", "dropout", "--dataset", "cifar100", "--model", "wideresnet", "--drop_method",
            "MaxSpacedDropout", "--drop", "0.3", "--batch_size", "8", "--epochs", "1",
            "--data-root", str(root), "--quiet",
            "--set", "model.student_downsample_factor=64", f"output_dir={tmp_path}", "name=run",
            "train.progress=false", "train.tensorboard=false", "train.device=cpu"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "--drop_method MaxSpacedDropout: no effect in the reference either" in err

    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["global_step"] == 2
    config = (run / "config.yaml").read_text()
    assert "method: dropout\n" in config and "student: wideresnet" in config
    assert list(load_checkpoint(run / "last.pt")["learners"]["model"]["model"]) == xternalz_keys(28, 10)
